"""FaceDetector: YuNet (OpenCV Zoo) faces with 5 landmarks, OpenCV ``FaceDetectorYN`` semantics.

The image is resized keeping its aspect ratio into the model's fixed input, at the top-left, zero
padding (``cv2.FaceDetectorYN`` pads bottom/right with zeros too), BGR 0..255. Decode as
``kernels.faces.decode_yunet``; NMS class-agnostic (IoU 0.3, score 0.9 by default, top_k 5000 as
OpenCV Zoo's demo). Results: ``Detections`` (class 0 = face) with ``data["landmarks"]`` (N, 5, 2)
float32 source pixels: right eye, left eye, nose tip, right and left mouth corners.
"""
from __future__ import annotations

import numpy as np

from edgerun.kernels import checks
from edgerun.kernels.boxes import scale_boxes
from edgerun.kernels.faces import decode_yunet
from edgerun.kernels.keypoints import scale_points
from edgerun.kernels.nms import nms
from edgerun.kernels.preprocess import Geometry

from ..results import Detections
from ..session import ModelError, Session
from ..spec import YUNET_OUTPUTS, ModelSpec
from .base import Task

__all__ = ["FaceDetector"]


class FaceDetector(Task):
    """YuNet face detector. Thread-safe like Detector.

    ``FaceDetector.from_path(path, score_threshold=0.9, iou_threshold=0.3, max_detections=300,
    threads=None, spin=False, providers=None, max_candidates=5000, **spec_overrides)``.
    """

    OPTIONS = ("score_threshold", "iou_threshold", "max_detections", "max_candidates")

    def __init__(self, session: Session, spec: ModelSpec, *, score_threshold: float = 0.9,
                 iou_threshold: float = 0.3, max_detections: int = 300, max_candidates: int = 5000):
        if spec.head != "yunet":
            raise ModelError(f"{session.path}: head {spec.head!r} is not a YuNet face head")
        names = [o.name for o in session.outputs]
        if len(names) != 12:
            raise ModelError(f"{session.path}: YuNet has 12 outputs (cls/obj/bbox/kps x 3 strides), got "
                             f"{len(names)}: {names}")
        order = ([names.index(n) for n in YUNET_OUTPUTS] if set(YUNET_OUTPUTS) <= set(names)
                 else list(range(12)))  # else assume the file's order: cls, obj, bbox, kps
        thresholds = (checks.finite_float("score_threshold", score_threshold, 0.0, 1.0),
                      checks.finite_float("iou_threshold", iou_threshold, 0.0, 1.0))
        limits = (checks.positive_int("max_detections", max_detections),
                  checks.positive_int("max_candidates", max_candidates))
        super().__init__(session, spec)
        self._order = order
        self.score_threshold, self.iou_threshold = thresholds
        self.max_detections, self.max_candidates = limits
        self.class_agnostic = True

    def postprocess(self, outputs: list[np.ndarray], geometry: Geometry, batch_index: int = 0
                    ) -> Detections:
        """Raw YuNet outputs -> faces with landmarks in source pixels."""
        o = [outputs[i][batch_index:batch_index + 1] for i in self._order]
        cand = decode_yunet(o[0:3], o[3:6], o[6:9], o[9:12], input_hw=(geometry.dst_h, geometry.dst_w),
                            strides=self.spec.strides, score_threshold=self.score_threshold,
                            max_candidates=self.max_candidates)
        keep = nms(cand.xyxy, cand.scores, None, iou_threshold=self.iou_threshold,
                   max_detections=self.max_detections)
        xyxy = scale_boxes(np.ascontiguousarray(cand.xyxy[keep]), geometry)
        landmarks = scale_points(np.ascontiguousarray(cand.landmarks[keep]), geometry)
        return Detections(xyxy, cand.scores[keep], np.zeros(len(keep), np.int64),
                          image_shape=(geometry.src_h, geometry.src_w), data={"landmarks": landmarks})

    def __repr__(self) -> str:
        return (f"FaceDetector(input={self.spec.input_size}, score>{self.score_threshold}, "
                f"iou>{self.iou_threshold})")
