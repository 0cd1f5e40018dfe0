"""SemanticSegmenter: per-pixel classes (DeepLabV3 on PASCAL VOC, Ultralytics' YOLO26 ``-sem`` models), as a
(H, W) uint8 label map in frame pixels.

Other models (DeepLab): the (1, h, w, C) or (1, C, h, w) scores are reduced by argmax in Numba at model
resolution (first maximum wins), then the label map is resized to the source with nearest neighbour at
pixel centres, undoing the preprocessing geometry (``stretch`` by default).

Ultralytics models (metadata ``task: semantic``) follow its semantic predictor: letterboxed input; an
export with the argmax baked in ((1, H, W) uint8, Ultralytics' ONNX default) has its class map cropped to
the letterbox content and resized to the frame with PyTorch's ``nearest``; a logits export ((1, C, h, w))
is resized bilinearly (align_corners=False) to the input, cropped, resized to the frame and reduced by
argmax there (fused: ``kernels.resample.bilinear_argmax``); one channel means class 1 where the logit > 0.
"""
from __future__ import annotations

import numpy as np

from edgerun.kernels.preprocess import Geometry
from edgerun.kernels.resample import bilinear_argmax, nearest_index, resize_bilinear
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
        if self.spec.source.get("framework") == "ultralytics":
            return SemanticMask(_ultralytics_map(outputs[0][batch_index], geometry))
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


def content_box(g: Geometry) -> tuple[int, int, int, int]:
    """Ultralytics' ``scale_masks`` crop of a letterboxed (dst_h, dst_w) map: (top, bottom, left, right),
    recomputed from the shapes as it does (gain, rounded content size, padding rounded with -0.1)."""
    gain = min(g.dst_h / g.src_h, g.dst_w / g.src_w)
    ch, cw = max(round(g.src_h * gain), 1), max(round(g.src_w * gain), 1)
    top, left = round((g.dst_h - ch) / 2 - 0.1), round((g.dst_w - cw) / 2 - 0.1)
    return top, top + ch, left, left + cw


def _ultralytics_map(pred: np.ndarray, g: Geometry) -> np.ndarray:
    """One image's Ultralytics semantic output (H, W) class map or (C, h, w) logits -> frame label map."""
    same = (g.dst_h, g.dst_w) == (g.src_h, g.src_w)
    if pred.ndim == 2:  # argmax baked into the graph
        labels = pred
        if labels.shape != (g.dst_h, g.dst_w):
            labels = labels[nearest_index(labels.shape[0], g.dst_h)[:, None], nearest_index(labels.shape[1], g.dst_w)]
        if same:
            return np.ascontiguousarray(labels, dtype=np.uint8)
        t, b, left, r = content_box(g)
        crop = labels[t:b, left:r]
        ys, xs = nearest_index(crop.shape[0], g.src_h), nearest_index(crop.shape[1], g.src_w)
        return crop[ys[:, None], xs[None, :]].astype(np.uint8)
    if pred.ndim != 3:
        raise ModelError(f"semantic output: expected a (H, W) class map or (C, H, W) logits per image, got {pred.shape}")
    x = np.ascontiguousarray(pred, dtype=np.float32)
    if x.shape[1:] != (g.dst_h, g.dst_w):
        x = resize_bilinear(x, (g.dst_h, g.dst_w))
    if not same:
        t, b, left, r = content_box(g)
        x = np.ascontiguousarray(x[:, t:b, left:r])
    if x.shape[0] == 1:  # binary: the logit's sign
        x = x if same else resize_bilinear(x, (g.src_h, g.src_w))
        return (x[0] > 0).astype(np.uint8)
    return bilinear_argmax(x, (g.src_h, g.src_w)) if not same else argmax_map(np.ascontiguousarray(x.transpose(1, 2, 0)))
