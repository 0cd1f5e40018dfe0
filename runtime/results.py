"""Result types: structs of numpy arrays with supervision's field names."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Detections", "Classifications", "SemanticMask"]


@dataclass
class Detections:
    """Detections of one image, in source-image pixels.

    Fields follow ``supervision.Detections`` (so ``sv.Detections(xyxy=d.xyxy, ...)`` is free):
    ``xyxy`` (N, 4) float32, ``confidence`` (N,) float32, ``class_id`` (N,) int64, optional
    ``mask`` (N, H, W) bool and ``tracker_id`` (N,) int64, and ``data`` for extra per-object arrays
    (e.g. ``data["keypoints"]``). ``timings`` holds per-stage milliseconds (``preprocess``,
    ``inference``, ``postprocess``); ``image_shape`` is the source (height, width).
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    mask: np.ndarray | None = None
    tracker_id: np.ndarray | None = None
    data: dict[str, np.ndarray] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    image_shape: tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    @classmethod
    def empty(cls, image_shape: tuple[int, int] = (0, 0)) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                   np.zeros((0,), np.int64), image_shape=image_shape)

    def to_records(self, names: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """One JSON-ready dict per object: ``xyxy``, ``confidence``, ``class_id``, ``class_name``."""
        out = []
        for i in range(len(self)):
            c = int(self.class_id[i])
            rec = {"xyxy": [round(float(v), 2) for v in self.xyxy[i]],
                   "confidence": round(float(self.confidence[i]), 5), "class_id": c,
                   "class_name": names[c] if 0 <= c < len(names) else str(c)}
            if self.tracker_id is not None:
                rec["tracker_id"] = int(self.tracker_id[i])
            for key in ("keypoints", "keypoint_confidence", "landmarks"):
                if key in self.data:
                    rec[key] = np.round(self.data[key][i].astype(np.float64), 3).tolist()
            out.append(rec)
        return out


@dataclass
class Classifications:
    """Top-k classes of one image: ``class_id`` (k,) int64 and ``confidence`` (k,) float32, best
    first (equal scores: lower class id first). ``probabilities`` (C,) float32 holds every class's
    score (softmax of the logits when the model outputs logits). Field names follow supervision's
    ``sv.Classifications``."""

    class_id: np.ndarray
    confidence: np.ndarray
    probabilities: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    image_shape: tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        return int(self.class_id.shape[0])

    def to_records(self, names: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """One JSON-ready dict per top-k class: ``class_id``, ``class_name``, ``confidence``."""
        return [{"class_id": int(c), "class_name": names[c] if 0 <= c < len(names) else str(int(c)),
                 "confidence": round(float(p), 5)} for c, p in zip(self.class_id, self.confidence)]


@dataclass
class SemanticMask:
    """Per-pixel classes of one image: ``label_map`` (H, W) uint8 in source pixels."""

    label_map: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.label_map.shape[:2]

    def to_records(self, names: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """One dict per class present: ``class_id``, ``class_name``, ``fraction`` of the pixels."""
        counts = np.bincount(self.label_map.ravel(), minlength=1)
        total = max(1, self.label_map.size)
        return [{"class_id": c, "class_name": names[c] if c < len(names) else str(c),
                 "fraction": round(int(n) / total, 5)} for c, n in enumerate(counts) if n]


def frame_record(frame: Any, det: Detections | Classifications | SemanticMask | None,
                 names: tuple[str, ...]) -> dict[str, Any]:
    """The JSON object one ``sources.Frame`` becomes (predict --json, stream --json, batch rows)."""
    h, w = (frame.image.shape[:2] if frame.image is not None else (None, None))
    key = "classes" if isinstance(det, (Classifications, SemanticMask)) else "detections"
    rec: dict[str, Any] = {"source": frame.source, "frame": frame.index, "width": w, "height": h,
                           key: det.to_records(names) if det is not None else [],
                           "speed_ms": {k: round(v, 3) for k, v in det.timings.items()} if det is not None else {}}
    if frame.error:
        rec["error"] = frame.error
    return rec
