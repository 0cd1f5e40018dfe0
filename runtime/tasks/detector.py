"""Detector: image in, boxes out, configured from the model's metadata.

By default it reproduces Ultralytics' predictor on the same ONNX file (letterbox geometry and
rounding, bilinear resize, strict score comparison, class-aware NMS, candidate cap 30000, max
detections 300); see the README section "Fidelity with Ultralytics" for the facts relied on.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Iterable, Sequence

import numpy as np

from edgerun.kernels.boxes import scale_boxes
from edgerun.kernels.decode import decode
from edgerun.kernels.errors import EdgerunTypeError, EdgerunValueError
from edgerun.kernels.nms import nms
from edgerun.kernels.preprocess import Geometry, letterbox, plan

from ..results import Detections
from ..session import ModelError, Session
from ..spec import ModelSpec, resolve_spec

__all__ = ["Detector"]

DETECTION_HEADS = ("yolov8", "yolov5", "yolox", "end2end")


class Detector:
    """A YOLO-family detector on ONNX Runtime with Numba pre/post-processing.

    Thread-safe: threads may share one Detector (each thread gets its own buffers).
    """

    def __init__(self, session: Session, spec: ModelSpec, *, score_threshold: float = 0.25,
                 iou_threshold: float = 0.7, max_detections: int = 300, class_agnostic: bool = False,
                 max_candidates: int = 30000):
        if spec.head not in DETECTION_HEADS:
            raise ModelError(f"{session.path}: head {spec.head!r} (task {spec.task!r}) is not a detection "
                             f"head; expected one of {DETECTION_HEADS}")
        _check_outputs(session, spec)
        if not 0.0 <= float(score_threshold) <= 1.0 or not 0.0 <= float(iou_threshold) <= 1.0:
            raise EdgerunValueError(f"score_threshold and iou_threshold must be in [0, 1], got "
                                    f"{score_threshold}, {iou_threshold}")
        if int(max_detections) <= 0 or int(max_candidates) <= 0:
            raise EdgerunValueError("max_detections and max_candidates must be > 0")
        self.session = session
        self.spec = spec
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = int(max_detections)
        self.max_candidates = int(max_candidates)
        self.class_agnostic = bool(class_agnostic)
        self._dtype = np.float16 if spec.input_dtype == "float16" else np.float32
        self._local = threading.local()

    @classmethod
    def from_path(cls, path: str, score_threshold: float = 0.25, iou_threshold: float = 0.7,
                  max_detections: int = 300, *, threads: int | None = None, spin: bool = False,
                  providers: Sequence[str] | None = None, class_agnostic: bool = False,
                  **spec_overrides: Any) -> "Detector":
        """Open an ONNX detector. ``spec_overrides`` replace any ModelSpec field
        (e.g. ``input_size=(480, 640)``, ``channel_order="bgr"``, ``names=[...]``)."""
        session = Session(str(path), threads=threads, spin=spin, providers=providers)
        spec = resolve_spec(session.metadata, session.inputs, session.outputs, spec_overrides)
        return cls(session, spec, score_threshold=score_threshold, iou_threshold=iou_threshold,
                   max_detections=max_detections, class_agnostic=class_agnostic)

    # -- the three stages -------------------------------------------------------------------
    @property
    def resize_mode(self) -> str:
        """The preprocessing mode: the spec's, or "rect" for letterbox models with dynamic H/W."""
        s = self.spec
        return "rect" if (s.dynamic_hw and s.rect and s.resize == "letterbox") else s.resize

    def plan(self, height: int, width: int) -> Geometry:
        """Where an image of this size lands in the model input."""
        s = self.spec
        return plan(height, width, s.input_size, mode=self.resize_mode, stride=s.stride,
                    pad_position=s.pad_position, resize_short=s.resize_short)

    def preprocess(self, image: np.ndarray, pixel_format: str = "bgr",
                   out: np.ndarray | None = None) -> tuple[np.ndarray, Geometry]:
        """Image -> model input tensor (1, C, H, W) or (1, H, W, C), written into a reused buffer."""
        h, w = _frame_size(image, pixel_format)
        geo = self.plan(h, w)
        if out is None:
            out = self._buffer(1, geo.dst_h, geo.dst_w)
        s = self.spec
        _, geo = letterbox(image, s.input_size, pixel_format=pixel_format, mode=self.resize_mode,
                  stride=s.stride, pad_value=s.pad_value, pad_position=s.pad_position,
                  channel_order=s.channel_order, scale=s.scale, mean=s.mean, std=s.std,
                  layout="chw" if s.layout == "nchw" else "hwc", dtype=self._dtype, out=out[0],
                  resize_short=s.resize_short)
        return out, geo

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Run the model on a prepared tensor."""
        return self.session.run({self.spec.input_name: tensor})

    def postprocess(self, outputs: list[np.ndarray], geometry: Geometry, batch_index: int = 0
                    ) -> Detections:
        """Raw outputs -> Detections in source pixels."""
        s = self.spec
        raw = outputs[0][batch_index:batch_index + 1]
        cand = decode(raw, s.head, score_threshold=self.score_threshold,
                      max_candidates=self.max_candidates, num_classes=s.num_classes,
                      strides=s.strides, input_hw=(geometry.dst_h, geometry.dst_w))
        if s.head == "end2end":
            keep = np.arange(min(len(cand.scores), self.max_detections), dtype=np.int64)
        else:
            keep = nms(cand.xyxy, cand.scores, cand.class_id, iou_threshold=self.iou_threshold,
                       max_detections=self.max_detections, class_agnostic=self.class_agnostic)
        xyxy = scale_boxes(np.ascontiguousarray(cand.xyxy[keep]), geometry)
        return Detections(xyxy, cand.scores[keep].astype(np.float32),
                          cand.class_id[keep].astype(np.int64),
                          image_shape=(geometry.src_h, geometry.src_w),
                          data={"anchor_index": cand.index[keep].astype(np.int64)})

    # -- public calls -----------------------------------------------------------------------
    def detect(self, image: np.ndarray, pixel_format: str = "bgr") -> Detections:
        """Detect objects in one frame: uint8 BGR/RGB (H, W, 3), GRAY (H, W), NV12/NV21/I420
        (H*3//2, W) or YUYV (H, W, 2), as named by ``pixel_format``."""
        t0 = time.perf_counter()
        tensor, geo = self.preprocess(image, pixel_format)
        t1 = time.perf_counter()
        outputs = self.infer(tensor)
        t2 = time.perf_counter()
        det = self.postprocess(outputs, geo)
        t3 = time.perf_counter()
        det.timings = {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3,
                       "postprocess": (t3 - t2) * 1e3}
        det.names = self.spec.names  # the spec's tuple (not a copy): to_records() names classes
        return det

    def detect_batch(self, images: Iterable[np.ndarray], pixel_format: str = "bgr") -> list[Detections]:
        """Detect on several frames; one batched ORT run when the model has a dynamic batch axis
        and the frames share one input geometry, else frame by frame."""
        images = list(images)
        if not images:
            return []
        geos = [self.plan(*_frame_size(im, pixel_format)) for im in images]
        if not self.spec.dynamic_batch or len({(g.dst_h, g.dst_w) for g in geos}) != 1:
            return [self.detect(im, pixel_format) for im in images]
        t0 = time.perf_counter()
        batch = self._buffer(len(images), geos[0].dst_h, geos[0].dst_w)
        for i, im in enumerate(images):
            self.preprocess(im, pixel_format, out=batch[i:i + 1])
        t1 = time.perf_counter()
        outputs = self.infer(batch)
        t2 = time.perf_counter()
        dets = [self.postprocess(outputs, g, i) for i, g in enumerate(geos)]
        t3 = time.perf_counter()
        n = len(images)
        for d in dets:
            d.timings = {"preprocess": (t1 - t0) * 1e3 / n, "inference": (t2 - t1) * 1e3 / n,
                         "postprocess": (t3 - t2) * 1e3 / n}
            d.names = self.spec.names
        return dets

    def close(self) -> None:
        """Release the ORT session."""
        self.session = None  # type: ignore[assignment]

    def __enter__(self) -> "Detector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.spec
        return (f"Detector(head={s.head}, input={s.input_size}, classes={s.num_classes}, "
                f"score>{self.score_threshold}, iou>{self.iou_threshold})")

    # -- internals --------------------------------------------------------------------------
    def _buffer(self, n: int, h: int, w: int) -> np.ndarray:
        shape = (n, 3, h, w) if self.spec.layout == "nchw" else (n, h, w, 3)
        bufs = getattr(self._local, "bufs", None)
        if bufs is None:
            bufs = self._local.bufs = {}
        buf = bufs.get(shape)
        if buf is None:
            if len(bufs) > 8:  # rect mode: a few aspect ratios at most in practice
                bufs.clear()
            buf = bufs[shape] = np.empty(shape, self._dtype)
        return buf


def _frame_size(image: np.ndarray, pixel_format: str) -> tuple[int, int]:
    if not isinstance(image, np.ndarray):
        raise EdgerunTypeError(f"image: expected a numpy.ndarray, got {type(image).__name__}")
    if image.ndim < 2 or image.shape[0] == 0 or image.shape[1] == 0:
        raise EdgerunValueError(f"image: expected a non-empty image, got shape {image.shape}")
    if pixel_format in ("nv12", "nv21", "i420"):
        return image.shape[0] * 2 // 3, image.shape[1]
    return image.shape[0], image.shape[1]


def _check_outputs(session: Session, spec: ModelSpec) -> None:
    """Refuse, at load time, outputs that do not fit the head, naming shapes and overrides."""
    shapes = [o.shape for o in session.outputs]
    first = shapes[0] if shapes else ()
    ok = len(first) == 3 and all(isinstance(d, int) for d in first[1:])
    if ok and spec.head == "yolov8":  # 4 + C rows; extra rows only with protos (seg) or keypoints
        rows, extra_ok = 4 + spec.num_classes, len(shapes) > 1 or bool(spec.kpt_shape)
        ok = spec.num_classes > 0 and (first[1] == rows or (first[1] > rows and extra_ok))
    elif ok and spec.head in ("yolov5", "yolox"):
        ok = first[2] == 5 + spec.num_classes and spec.num_classes > 0
    elif ok and spec.head == "end2end":
        ok = first[2] == 6
    if not ok:
        raise ModelError(
            f"{session.path}: outputs {[(o.name, o.shape) for o in session.outputs]} match no known "
            f"detection head for head={spec.head!r} num_classes={spec.num_classes}. Known heads: "
            "yolov8 (1, 4+C, N), yolov5 (1, N, 5+C), yolox (1, N, 5+C raw grid), end2end (1, K, 6). "
            "Override with Detector.from_path(path, head=..., num_classes=...) or "
            "`edgerun predict --head ... --num-classes ...`.")
