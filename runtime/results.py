"""Result types: structs of numpy arrays with supervision's field names."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgerun.kernels.errors import EdgerunTypeError, EdgerunValueError

__all__ = ["Timed", "Detections", "Classifications", "SemanticMask", "DepthMap"]


class Timed:
    """What every task result shares: ``timings`` (ms per stage) and Ultralytics' name for it."""

    timings: dict[str, float]

    @property
    def speed(self) -> dict[str, float]:
        """Ultralytics' name for ``timings`` (ms per stage)."""
        return self.timings


@dataclass
class Detections(Timed):
    """Detections of one image, in source-image pixels.

    Fields follow ``supervision.Detections`` (so ``sv.Detections(xyxy=d.xyxy, ...)`` is free):
    ``xyxy`` (N, 4) float32, ``confidence`` (N,) float32, ``class_id`` (N,) int64, optional
    ``mask`` (N, H, W) bool and ``tracker_id`` (N,) int64, and ``data`` for extra per-object arrays
    (e.g. ``data["keypoints"]``; oriented boxes: ``data["xyxyxyxy"]`` (N, 4, 2) corners and
    ``data["xywhr"]`` (N, 5) centre, size, angle in radians, with ``xyxy`` their axis-aligned bounds,
    supervision's convention). ``timings`` holds per-stage milliseconds (``preprocess``,
    ``inference``, ``postprocess``; also as Ultralytics' ``speed``); ``image_shape`` is the source
    (height, width); ``names`` is the model's class-name table (the spec's own tuple, not a copy),
    so ``to_records()`` and ``to_supervision()`` name the classes.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    mask: np.ndarray | None = None
    tracker_id: np.ndarray | None = None
    data: dict[str, np.ndarray] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    image_shape: tuple[int, int] = (0, 0)
    names: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        """Shapes agree: xyxy (N, 4) float32, confidence and class_id (N,), mask (N, H, W) or None,
        tracker_id (N,) or None, every ``data`` array N long (the N objects of one image)."""
        for name in ("xyxy", "confidence", "class_id"):
            if not isinstance(getattr(self, name), np.ndarray):
                raise EdgerunTypeError(f"Detections.{name}: expected a numpy.ndarray, got "
                                       f"{type(getattr(self, name)).__name__}")
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4 or self.xyxy.dtype != np.float32:
            raise EdgerunValueError(f"Detections.xyxy: expected an (N, 4) float32 array, got {self.xyxy.shape} "
                                    f"{self.xyxy.dtype} (use .astype(np.float32) / reshape(-1, 4))")
        n = self.xyxy.shape[0]
        for name in ("confidence", "class_id", "tracker_id"):
            a = getattr(self, name)
            if a is not None and (not isinstance(a, np.ndarray) or a.shape != (n,)):
                raise EdgerunValueError(f"Detections.{name}: expected shape ({n},) for {n} boxes, got "
                                        f"{getattr(a, 'shape', type(a).__name__)}")
        if self.mask is not None and (not isinstance(self.mask, np.ndarray) or self.mask.ndim != 3
                                      or self.mask.shape[0] != n):
            raise EdgerunValueError(f"Detections.mask: expected (N={n}, H, W) or None, got "
                                    f"{getattr(self.mask, 'shape', type(self.mask).__name__)}")
        for k, v in self.data.items():
            if not isinstance(v, np.ndarray) or v.ndim == 0 or v.shape[0] != n:
                raise EdgerunValueError(f"Detections.data[{k!r}]: expected an array of {n} rows, got "
                                        f"{getattr(v, 'shape', type(v).__name__)}")

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, index: int | slice | np.ndarray | list) -> "Detections":
        """The objects at ``index`` (an int, a slice, an index array or an (N,) boolean mask) as new
        Detections: every per-object array (mask, tracker_id, each ``data`` entry) indexed alike;
        timings, image_shape and names kept. ``d[d.confidence > 0.5]``, ``d[d.class_id == 0]``."""
        if isinstance(index, (int, np.integer)) and not isinstance(index, (bool, np.bool_)):
            n = len(self)
            if not -n <= index < n:
                raise IndexError(f"Detections index {index} out of range for {n} objects")
            index = [int(index)]
        elif not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype == np.bool_ and index.shape != (len(self),):
                raise EdgerunValueError(f"Detections boolean index: expected shape ({len(self)},), got {index.shape}")
            if index.dtype != np.bool_ and not np.issubdtype(index.dtype, np.integer) and index.size:
                raise EdgerunTypeError(f"Detections index: expected int, slice, int array or bool mask, got "
                                       f"{index.dtype} array")
            index = index if index.size or index.dtype == np.bool_ else index.astype(np.int64)

        def pick(a):
            return None if a is None else a[index]

        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index],
                          mask=pick(self.mask), tracker_id=pick(self.tracker_id),
                          data={k: v[index] for k, v in self.data.items()}, timings=dict(self.timings),
                          image_shape=self.image_shape, names=self.names)

    def class_name(self) -> np.ndarray:
        """(N,) class names (the id as text for a class the model does not name)."""
        return np.array([_name(self.names, int(c)) for c in self.class_id], dtype=str)

    def to_supervision(self):
        """The same detections as a ``supervision.Detections`` (``pip install supervision``).

        No array is copied: ``xyxy``, ``confidence``, ``class_id``, ``mask``, ``tracker_id`` and
        every per-object ``data`` array are shared; class names go to ``data["class_name"]`` as
        supervision's own converters do."""
        try:
            import supervision as sv
        except ImportError:
            raise ImportError("Detections.to_supervision() needs supervision: pip install supervision") from None
        data = dict(self.data)
        data["class_name"] = self.class_name()
        return sv.Detections(xyxy=self.xyxy, mask=self.mask, confidence=self.confidence,
                             class_id=self.class_id, tracker_id=self.tracker_id, data=data)

    @classmethod
    def empty(cls, image_shape: tuple[int, int] = (0, 0)) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                   np.zeros((0,), np.int64), image_shape=image_shape)

    def to_records(self, names: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """One JSON-ready dict per object: ``xyxy``, ``confidence``, ``class_id``, ``class_name``
        (from ``names``, default the model's ``self.names``), plus ``tracker_id``, keypoints, landmarks
        and the oriented box (``xyxyxyxy`` corners, ``xywhr``) when present."""
        names = self.names if names is None or not len(names) else names
        out = []
        for i in range(len(self)):
            c = int(self.class_id[i])
            rec = {"xyxy": [round(float(v), 2) for v in self.xyxy[i]],
                   "confidence": round(float(self.confidence[i]), 5), "class_id": c,
                   "class_name": _name(names, c)}
            if self.tracker_id is not None:
                rec["tracker_id"] = int(self.tracker_id[i])
            for key in ("keypoints", "keypoint_confidence", "landmarks", "xyxyxyxy", "xywhr"):
                if key in self.data:
                    rec[key] = np.round(self.data[key][i].astype(np.float64), 3).tolist()
            out.append(rec)
        return out


@dataclass
class Classifications(Timed):
    """Top-k classes of one image: ``class_id`` (k,) int64 and ``confidence`` (k,) float32, best
    first (equal scores: lower class id first). ``probabilities`` (C,) float32 holds every class's
    score (softmax of the logits when the model outputs logits). Field names follow supervision's
    ``sv.Classifications``."""

    class_id: np.ndarray
    confidence: np.ndarray
    probabilities: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    image_shape: tuple[int, int] = (0, 0)
    names: tuple[str, ...] = field(default=(), repr=False)

    def __len__(self) -> int:
        return int(self.class_id.shape[0])

    def to_records(self, names: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """One JSON-ready dict per top-k class: ``class_id``, ``class_name``, ``confidence``."""
        names = self.names if names is None or not len(names) else names
        return [{"class_id": int(c), "class_name": _name(names, int(c)),
                 "confidence": round(float(p), 5)} for c, p in zip(self.class_id, self.confidence)]


@dataclass
class SemanticMask(Timed):
    """Per-pixel classes of one image: ``label_map`` (H, W) uint8 in source pixels."""

    label_map: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    names: tuple[str, ...] = field(default=(), repr=False)

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.label_map.shape[:2]

    def to_records(self, names: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """One dict per class present: ``class_id``, ``class_name``, ``fraction`` of the pixels."""
        names = self.names if names is None or not len(names) else names
        counts = np.bincount(self.label_map.ravel(), minlength=1)
        total = max(1, self.label_map.size)
        return [{"class_id": c, "class_name": _name(names, c),
                 "fraction": round(int(n) / total, 5)} for c, n in enumerate(counts) if n]


@dataclass
class DepthMap(Timed):
    """Per-pixel depth of one image: ``depth`` (H, W) float32 in source pixels, in the model's units
    (metres for Ultralytics' YOLO26 depth models; larger is farther)."""

    depth: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    names: tuple[str, ...] = field(default=(), repr=False)

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.depth.shape[:2]

    def to_records(self, names: tuple[str, ...] | None = None) -> dict[str, float]:
        """A compact JSON-ready summary (not the map): ``min``, ``median``, ``max``, ``mean``."""
        d = self.depth
        if d.size == 0:
            return {}
        return {k: round(float(f(d)), 5) for k, f in (("min", np.min), ("median", np.median), ("max", np.max),
                                                      ("mean", np.mean))}


def _name(names: tuple[str, ...], c: int) -> str:
    return names[c] if 0 <= c < len(names) else str(c)


def result_record(source: str, index: int, det: Detections | Classifications | SemanticMask | DepthMap | None,
                  names: tuple[str, ...], *, error: str | None = None,
                  image_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    """The one JSON object per frame (``edgerun predict --json``, ``stream --json``, batch rows):
    source, frame index, size (the result's ``image_shape``, else ``image_shape``), the per-object
    records, ``speed_ms`` and, for a failed frame, ``error``."""
    shape = det.image_shape if det is not None else image_shape
    h, w = (int(shape[0]), int(shape[1])) if shape else (None, None)
    key = ("classes" if isinstance(det, (Classifications, SemanticMask)) else
           "depth" if isinstance(det, DepthMap) else "detections")
    rec: dict[str, Any] = {"source": source, "frame": index, "width": w, "height": h,
                           key: det.to_records(names) if det is not None else [],
                           "speed_ms": {k: round(v, 3) for k, v in det.timings.items()} if det is not None else {}}
    if error:
        rec["error"] = error
    return rec


def frame_record(frame: Any, det: Detections | Classifications | SemanticMask | DepthMap | None,
                 names: tuple[str, ...]) -> dict[str, Any]:
    """``result_record`` of one ``sources.Frame`` (its source, index, error and image size)."""
    shape = frame.image.shape[:2] if frame.image is not None else None
    return result_record(frame.source, frame.index, det, names, error=frame.error, image_shape=shape)
