"""Segmenter: YOLOv8-seg instance segmentation (boxes + masks), Ultralytics semantics.

Boxes go through Detector's decode + NMS (the mask-coefficient rows are ignored there). Masks are then
built for the kept anchors only (``kernels.masks.process_masks``):

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
        if spec.head != "yolov8" or len(outs) < 2 or len(outs[1]) != 4:
            raise ModelError(f"{session.path}: a segmentation model needs a yolov8 head (1, 4+C+M, N) and "
                             f"prototypes (1, M, h, w); got head={spec.head!r}, outputs {outs}")
        m, rows = outs[1][1], outs[0][1]
        if isinstance(m, int) and isinstance(rows, int) and rows != 4 + spec.num_classes + m:
            raise ModelError(f"{session.path}: output rows {rows} != 4 + {spec.num_classes} classes + {m} "
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
        c0 = 4 + self.spec.num_classes
        coef = np.ascontiguousarray(raw[c0:c0 + protos.shape[0], idx].T, dtype=np.float32)
        if self.masks == "none":
            det.data["mask_coefficients"] = coef
            return det
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
