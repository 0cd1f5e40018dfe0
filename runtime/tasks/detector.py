"""Detector: image in, boxes out, configured from the model's metadata.

By default it reproduces Ultralytics' predictor on the same ONNX file (letterbox geometry and
rounding, bilinear resize, strict score comparison, class-aware NMS, candidate cap 30000, max
detections 300); see the README section "Fidelity with Ultralytics" for the facts relied on.
"""
from __future__ import annotations

import numpy as np

from edgerun.kernels.boxes import scale_boxes
from edgerun.kernels.decode import decode
from edgerun.kernels.nms import nms
from edgerun.kernels.preprocess import Geometry

from ..results import Detections
from ..session import ModelError, Session
from ..spec import ModelSpec
from .base import Task
from .options import DetectorOptions

__all__ = ["Detector"]

DETECTION_HEADS = ("yolov8", "yolov5", "yolox", "end2end", "dfl")


class Detector(Task):
    """A YOLO-family detector on ONNX Runtime with Numba pre/post-processing.

    ``Detector.from_path(path, score_threshold=0.25, iou_threshold=0.7, max_detections=300,
    class_agnostic=False, max_candidates=30000, threads=None, spin=None, providers=None,
    **spec_overrides)`` (``DetectorOptions`` / ``ModelOptions``); ``detect(image, pixel_format="bgr")``
    -> ``Detections`` (see ``Task.run``). Thread-safe: threads may share one Detector.
    """

    Options = DetectorOptions
    TASK = "detect"
    HEADS = DETECTION_HEADS  # the heads this class reads

    def __init__(self, session: Session, spec: ModelSpec, options: DetectorOptions | None = None):
        if spec.head not in self.HEADS:
            raise ModelError(f"{session.path}: head {spec.head!r} (task {spec.task!r}) is not a "
                             f"{self.TASK} head; expected one of {self.HEADS}")
        self.check_outputs(session, spec)
        super().__init__(session, spec, options)
        o = self.options
        self.score_threshold, self.iou_threshold = o.score_threshold, o.iou_threshold
        self.max_detections, self.max_candidates = o.max_detections, o.max_candidates
        self.class_agnostic = o.class_agnostic

    @staticmethod
    def check_outputs(session: Session, spec: ModelSpec) -> None:
        """Refuse, when the model opens, outputs that do not fit the head (subclasses check their own)."""
        _check_outputs(session, spec)

    def detect(self, image: np.ndarray, pixel_format: str = "bgr") -> Detections:
        """Boxes of one frame (``run``)."""
        return self.run(image, pixel_format)

    def detect_batch(self, images, pixel_format: str = "bgr") -> list[Detections]:
        """Boxes of several frames (``run_batch``)."""
        return self.run_batch(images, pixel_format)

    def postprocess(self, outputs: list[np.ndarray], geometry: Geometry, batch_index: int = 0
                    ) -> Detections:
        """Raw outputs -> Detections in source pixels."""
        s = self.spec
        raw = outputs[0][batch_index:batch_index + 1]
        cand = decode(raw, s.head, score_threshold=self.score_threshold,
                      max_candidates=self.max_candidates, num_classes=s.num_classes,
                      strides=s.strides, input_hw=(geometry.dst_h, geometry.dst_w), reg_max=s.reg_max)
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

    def __repr__(self) -> str:
        s = self.spec
        return (f"Detector(head={s.head}, input={s.input_size}, classes={s.num_classes}, "
                f"score>{self.score_threshold}, iou>{self.iou_threshold})")


def _check_outputs(session: Session, spec: ModelSpec) -> None:
    """Refuse, at load time, outputs that do not fit the head, naming shapes and overrides.

    Symbolic dims (``None``: dynamic H/W exports declare ``(batch, rows, anchors)`` or leave every
    axis symbolic) cannot be checked here; ``decode`` checks the real shape on every run."""
    shapes = [o.shape for o in session.outputs]
    first = shapes[0] if shapes else ()
    ok = len(first) == 3 and (spec.num_classes > 0 or spec.head == "end2end")
    rows, cols = (first[1], first[2]) if ok else (None, None)
    if ok and spec.head == "yolov8" and rows is not None:  # 4 + C rows; extra only with protos or keypoints
        need, extra_ok = 4 + spec.num_classes, len(shapes) > 1 or bool(spec.kpt_shape)
        ok = rows == need or (rows > need and extra_ok)
    elif ok and spec.head == "dfl" and rows is not None:
        ok = rows == 4 * spec.reg_max + spec.num_classes
    elif ok and spec.head in ("yolov5", "yolox") and cols is not None:
        ok = cols == 5 + spec.num_classes
    elif ok and spec.head == "end2end" and cols is not None:
        ok = cols >= 6  # x1, y1, x2, y2, score, class + the task's extra columns (checked by the task)
    if not ok:
        raise ModelError(
            f"{session.path}: outputs {[(o.name, o.shape) for o in session.outputs]} match no known "
            f"detection head for head={spec.head!r} num_classes={spec.num_classes}. Known heads: "
            "yolov8 (1, 4+C, N), yolov5 (1, N, 5+C), yolox (1, N, 5+C raw grid), end2end (1, K, 6+E), "
            "dfl (1, 4*reg_max+C, N: edgerun export's raw head). "
            "Override with Detector.from_path(path, head=..., num_classes=...) or "
            "`edgerun predict --head ... --num-classes ...`.")
