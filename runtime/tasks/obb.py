"""ObbDetector: oriented boxes (YOLOv8/11-obb, YOLO26-obb), Ultralytics 8.4 semantics.

Two heads, as Ultralytics' exporter writes them:

- raw one-to-many head "obb" (1, 4 + C + 1, N): rows cx, cy, w, h (tensor px), C class scores (already
  sigmoided), then the angle in radians (YOLOv8/11 squash it to [-pi/4, 3pi/4); YOLO26 emits it raw;
  either way it is used as is). Decoded like ``non_max_suppression(rotated=True)``: best class with a
  score > threshold, at most ``max_candidates`` by score, then class-offset probiou Fast-NMS (a box is
  dropped when any higher-scored box of its class overlaps it by more than ``iou_threshold``), at most
  ``max_detections`` kept;
- post-processed head "end2end" (1, K, 7): YOLO26's NMS-free ``nms=False`` export or any ``nms=True``
  export, rows cx, cy, w, h, score, class, angle; confidence filter only (zero padding rows never pass).

Boxes go back through the letterbox as Ultralytics' ``scale_boxes(xywh=True)`` does (centre minus
padding, centre and size over the per-axis gain, no clipping). Like Ultralytics 8.4's predictor, the
rotated box is returned as the model emits it (not regularized: ``Results.obb.xywhr`` is not either).

Results (supervision's convention): ``Detections.xyxy`` the axis-aligned bounds of the corners,
``data["xyxyxyxy"]`` (N, 4, 2) float32 corners (Ultralytics' ``xywhr2xyxyxyxy`` order), ``data["xywhr"]``
(N, 5) float32 centre, size, angle.
"""
from __future__ import annotations

import numpy as np

from edgerun.kernels import obb
from edgerun.kernels.preprocess import Geometry

from ..results import Detections
from ..session import ModelError, Session
from ..spec import ModelSpec
from .detector import Detector
from .options import ObbOptions

__all__ = ["ObbDetector", "OBB_HEADS"]

OBB_HEADS = ("obb", "end2end")


class ObbDetector(Detector):
    """Oriented-box detector. ``ObbDetector.from_path(path, score_threshold=0.25, iou_threshold=0.7,
    max_detections=300, class_agnostic=False, max_candidates=30000, **model_options)`` (``ObbOptions`` /
    ``ModelOptions``); ``run(image)`` -> ``Detections`` with ``data["xyxyxyxy"]`` and ``data["xywhr"]``.
    Thread-safe."""

    Options = ObbOptions
    TASK = "obb"
    HEADS = OBB_HEADS

    @staticmethod
    def check_outputs(session: Session, spec: ModelSpec) -> None:
        """(1, 4+C+1, N) for head "obb", (1, K, 7) for "end2end"."""
        shape = session.outputs[0].shape if session.outputs else ()
        if len(shape) != 3:
            raise ModelError(f"{session.path}: an OBB model needs head 'obb' (1, 4+C+1, N) or 'end2end' (1, K, 7); "
                             f"got head={spec.head!r}, outputs {[o.shape for o in session.outputs]}")
        rows, cols = shape[1], shape[2]
        if spec.head == "obb" and isinstance(rows, int) and rows != 4 + spec.num_classes + 1:
            raise ModelError(f"{session.path}: output rows {rows} != 4 + {spec.num_classes} classes + 1 angle; "
                             "check num_classes")
        if spec.head == "end2end" and isinstance(cols, int) and cols != 7:
            raise ModelError(f"{session.path}: end2end OBB output columns {cols} != 7 (cx, cy, w, h, score, "
                             "class, angle)")

    def postprocess(self, outputs: list[np.ndarray], geometry: Geometry, batch_index: int = 0) -> Detections:
        """Raw outputs -> Detections with oriented boxes in source pixels."""
        s = self.spec
        raw = outputs[0][batch_index:batch_index + 1]
        if s.head == "end2end":
            cand = obb.decode_obb_end2end(raw, score_threshold=self.score_threshold,
                                          max_candidates=self.max_detections)
            keep = np.arange(len(cand.scores), dtype=np.int64)
        else:
            cand = obb.decode_obb(raw, num_classes=s.num_classes, score_threshold=self.score_threshold,
                                  max_candidates=self.max_candidates)
            keep = obb.obb_nms(cand.xywhr, cand.scores, cand.class_id, iou_threshold=self.iou_threshold,
                               max_detections=self.max_detections, class_agnostic=self.class_agnostic)
        xywhr = obb.scale_rboxes(np.ascontiguousarray(cand.xywhr[keep]), geometry)
        corners = obb.xywhr_to_corners(xywhr)
        return Detections(obb.corners_to_xyxy(corners), cand.scores[keep].astype(np.float32),
                          cand.class_id[keep].astype(np.int64), image_shape=(geometry.src_h, geometry.src_w),
                          data={"xyxyxyxy": corners, "xywhr": xywhr, "anchor_index": cand.index[keep].astype(np.int64)})

    def __repr__(self) -> str:
        s = self.spec
        return (f"ObbDetector(head={s.head}, input={s.input_size}, classes={s.num_classes}, "
                f"score>{self.score_threshold}, iou>{self.iou_threshold})")

