"""Segmenter: YOLOv8/11/26-seg instance segmentation (boxes + masks), Ultralytics semantics.

Two heads: the raw one-to-many head (1, 4+C+M, N) goes through Detector's decode + NMS (the
mask-coefficient rows are ignored there); the post-processed one (head "end2end": YOLO26's NMS-free
``nms=False`` export or any ``nms=True`` export, rows x1, y1, x2, y2, score, class, M coefficients, zero
rows as padding) through the confidence filter only. Masks are then built for the kept rows only
(``kernels.masks.process_masks``):

- ``masks="full"`` (default): ``Detections.mask`` (N, H, W) bool in source pixels, Ultralytics 8.4's
  default masks (``retina_masks=False``) mapped to the image by its ``scale_masks``; objects whose mask
  is empty are dropped, as Ultralytics' predictor drops them.
- ``masks="proto"``: ``data["proto_mask"]`` (N, bh, bw) bool at prototype resolution over the
  letterboxed image region (a 4x cheaper preview; resize it to the source yourself); objects with an
  empty prototype-resolution mask are dropped.
- ``masks="none"``: boxes only (``data["mask_coefficients"]`` (N, M) float32 kept for later); no
  mask is computed, so no object is dropped for an empty one.
"""
from __future__ import annotations

import numpy as np

from edgerun.kernels.masks import process_masks
from edgerun.kernels.preprocess import Geometry

from .detector import Detector
from ..results import Detections
from ..session import ModelError, Session
from ..spec import ModelSpec
from .options import MASK_MODES, SegmenterOptions

__all__ = ["Segmenter", "MASK_OPTIONS"]

MASK_OPTIONS = MASK_MODES


class Segmenter(Detector):
    """Instance segmentation. Options as Detector plus ``masks`` ("full", "proto" or "none")."""

    Options = SegmenterOptions
    TASK = "segment"

    def __init__(self, session: Session, spec: ModelSpec, options: SegmenterOptions | None = None):
        outs = [o.shape for o in session.outputs]
        if spec.head not in ("yolov8", "end2end") or len(outs) < 2 or len(outs[1]) != 4 or len(outs[0]) != 3:
            raise ModelError(f"{session.path}: a segmentation model needs a yolov8 head (1, 4+C+M, N) or an "
                             f"end2end head (1, K, 6+M), and prototypes (1, M, h, w); got head={spec.head!r}, "
                             f"outputs {outs}")
        m = outs[1][1]
        if spec.head == "end2end":
            cols = outs[0][2]
            if isinstance(m, int) and isinstance(cols, int) and cols != 6 + m:
                raise ModelError(f"{session.path}: end2end output columns {cols} != 6 + {m} mask coefficients")
        elif isinstance(m, int) and isinstance(outs[0][1], int) and outs[0][1] != 4 + spec.num_classes + m:
            raise ModelError(f"{session.path}: output rows {outs[0][1]} != 4 + {spec.num_classes} classes + {m} "
                             "mask coefficients; check num_classes")
        super().__init__(session, spec, options)
        self.masks = self.options.masks

    def segment(self, image: np.ndarray, pixel_format: str = "bgr") -> Detections:
        """Boxes with masks of one frame (``run``)."""
        return self.run(image, pixel_format)

    def postprocess(self, outputs: list[np.ndarray], geometry: Geometry, batch_index: int = 0
                    ) -> Detections:
        """Raw outputs -> Detections with masks for the kept boxes."""
        det = super().postprocess(outputs, geometry, batch_index)
        raw, protos = outputs[0][batch_index], outputs[1][batch_index]
        idx = det.data["anchor_index"]
        m = protos.shape[0]
        if self.spec.head == "end2end":  # rows: x1, y1, x2, y2 (tensor px), score, class, coefficients
            coef = np.ascontiguousarray(raw[idx, 6:6 + m], dtype=np.float32)
        else:
            c0 = 4 + self.spec.num_classes
            coef = np.ascontiguousarray(raw[c0:c0 + m, idx].T, dtype=np.float32)
        if self.masks == "none":
            det.data["mask_coefficients"] = coef
            return det
        if self.spec.head == "end2end":
            boxes = np.ascontiguousarray(raw[idx, :4], dtype=np.float32)
        else:
            boxes = _tensor_boxes(raw, idx)
        nonempty = np.empty(len(idx), np.bool_)
        masks = process_masks(protos, coef, boxes, geometry, mode=self.masks, nonempty=nonempty)
        if not nonempty.all():  # Ultralytics keeps only predictions with a mask
            det, masks = det[nonempty], masks[nonempty]
        if self.masks == "proto":
            det.data["proto_mask"] = masks
        else:
            det.mask = masks
        return det

    def __repr__(self) -> str:
        return "Seg" + super().__repr__() + f"[masks={self.masks}]"


def _tensor_boxes(raw: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """xyxy in tensor pixels of the kept anchors, computed as decode does (float32 cx -/+ w*0.5)."""
    cx, cy, w, h = (raw[r, idx].astype(np.float32) for r in range(4))
    half = np.float32(0.5)
    return np.stack([cx - w * half, cy - h * half, cx + w * half, cy + h * half], 1).astype(np.float32)
