"""PoseDetector: YOLOv8/11-pose, boxes plus keypoints (Ultralytics semantics).

Boxes go through Detector's decode + NMS (head yolov8, the K*D keypoint rows are ignored there), or
through the confidence filter only for post-processed exports (head "end2end": YOLO26's NMS-free
``nms=False`` or any ``nms=True`` export, rows x1, y1, x2, y2, score, class, K*D keypoint values); the
kept rows' keypoints are then gathered, mapped back with the same geometry and clipped to the
image, as Ultralytics' ``scale_coords`` does. Results: ``data["keypoints"]`` (N, K, 2) float32 source
pixels and ``data["keypoint_confidence"]`` (N, K) float32.
"""
from __future__ import annotations

import numpy as np

from edgerun.kernels.keypoints import gather_keypoints
from edgerun.kernels.preprocess import Geometry

from .detector import Detector
from ..results import Detections
from ..session import ModelError, Session
from ..spec import ModelSpec
from .options import PoseOptions

__all__ = ["PoseDetector", "COCO_SKELETON"]

# COCO 17-keypoint limbs (0-based), as Ultralytics draws them
COCO_SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
                 (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))


class PoseDetector(Detector):
    """Person (or any class) boxes with keypoints. Same options and thread-safety as Detector."""

    Options = PoseOptions
    TASK = "pose"

    def __init__(self, session: Session, spec: ModelSpec, options: PoseOptions | None = None):
        if spec.head not in ("yolov8", "end2end") or not spec.kpt_shape:
            raise ModelError(f"{session.path}: a pose model needs head 'yolov8' or 'end2end' and kpt_shape (K, D); "
                             f"got head={spec.head!r} kpt_shape={spec.kpt_shape}. Override with "
                             "kpt_shape=(17, 3) if the metadata lacks it")
        k, d = spec.kpt_shape
        shape = session.outputs[0].shape
        if spec.head == "end2end":
            cols = shape[2] if len(shape) == 3 else None
            if d not in (2, 3) or (isinstance(cols, int) and cols != 6 + k * d):
                raise ModelError(f"{session.path}: end2end output columns {cols} != 6 + {k}x{d} keypoint "
                                 "values; check kpt_shape")
        else:
            rows = shape[1]
            if d not in (2, 3) or (isinstance(rows, int) and rows != 4 + spec.num_classes + k * d):
                raise ModelError(f"{session.path}: output rows {rows} != 4 + {spec.num_classes} classes + "
                                 f"{k}x{d} keypoint values; check num_classes / kpt_shape")
        super().__init__(session, spec, options)

    def postprocess(self, outputs: list[np.ndarray], geometry: Geometry, batch_index: int = 0
                    ) -> Detections:
        """Raw outputs -> Detections with keypoints in source pixels."""
        det = super().postprocess(outputs, geometry, batch_index)
        k, d = self.spec.kpt_shape
        raw = outputs[0][batch_index]
        idx = det.data["anchor_index"]
        if self.spec.head == "end2end":  # (K, 6 + k*d) rows: only the kept rows' keypoint columns, transposed
            raw = np.ascontiguousarray(raw[idx, 6:6 + k * d].T)
            idx, first = np.arange(len(idx), dtype=np.int64), 0
        else:
            first = 4 + self.spec.num_classes
        xy, conf = gather_keypoints(raw, idx, geometry, first_row=first, num_keypoints=k, dims=d)
        det.data["keypoints"] = xy
        det.data["keypoint_confidence"] = conf
        return det

    def __repr__(self) -> str:
        return "Pose" + super().__repr__() + f"[kpt_shape={self.spec.kpt_shape}]"
