"""SemanticSegmenter: per-pixel classes (e.g. DeepLabV3, PASCAL VOC), as a (H, W) uint8 label map.

The model's (1, h, w, C) or (1, C, h, w) scores are reduced by argmax in Numba at model resolution
(first maximum wins), then the label map is resized to the source with nearest neighbour (labels
cannot be interpolated), undoing the preprocessing geometry (``stretch`` by default).
"""
from __future__ import annotations

import numpy as np

from edgerun.kernels.preprocess import Geometry
from edgerun.kernels.topk import argmax_map

from ..results import SemanticMask
from ..session import ModelError, Session
from ..spec import VOC_NAMES, ModelSpec
from .base import Task
from .options import SemanticOptions

__all__ = ["SemanticSegmenter", "VOC_NAMES"]


class SemanticSegmenter(Task):
    """Semantic segmentation; ``segment(image)`` -> ``SemanticMask``. Thread-safe like Detector.

    ``SemanticSegmenter.from_path(path, threads=None, spin=None, providers=None, **spec_overrides)``.
    """

    Options = SemanticOptions
    TASK = "semantic"

    def __init__(self, session: Session, spec: ModelSpec, options: SemanticOptions | None = None):
        if spec.head != "semantic":
            raise ModelError(f"{session.path}: head {spec.head!r} is not a per-pixel classifier")
        if not 1 <= spec.num_classes <= 256:
            raise ModelError(f"{session.path}: {spec.num_classes} classes do not fit a uint8 label map")
        super().__init__(session, spec, options)

    def postprocess(self, outputs: list[np.ndarray], geometry: Geometry, batch_index: int = 0
                    ) -> SemanticMask:
        """Scores -> (src_h, src_w) uint8 label map."""
        x = np.asarray(outputs[0][batch_index], np.float32)
        if x.shape[-1] != self.spec.num_classes:  # channels first
            x = x.transpose(1, 2, 0)
        return SemanticMask(_to_source(argmax_map(x), geometry))

    def segment(self, image: np.ndarray, pixel_format: str = "bgr") -> SemanticMask:
        """Label map of one frame (same pixel formats as ``Detector.detect``)."""
        return self.run(image, pixel_format)

    def __repr__(self) -> str:
        return f"SemanticSegmenter(input={self.spec.input_size}, classes={self.spec.num_classes})"


def _to_source(labels: np.ndarray, g: Geometry) -> np.ndarray:
    """Nearest-neighbour map from tensor pixels back to source pixels (pixel centres)."""
    ys = ((np.arange(g.src_h) + 0.5) * g.scale_y + g.pad_y).astype(np.int64).clip(0, labels.shape[0] - 1)
    xs = ((np.arange(g.src_w) + 0.5) * g.scale_x + g.pad_x).astype(np.int64).clip(0, labels.shape[1] - 1)
    return labels[ys[:, None], xs[None, :]]
