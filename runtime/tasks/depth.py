"""DepthEstimator: monocular depth (Ultralytics' YOLO26 depth models), as a (H, W) float32 map in frame pixels.

Ultralytics' depth predictor stretches the frame to the model input (no letterbox, OpenCV INTER_LINEAR),
and resizes the (1, 1, h, w) output bilinearly with ``align_corners=True``, first to the input size, then
to the frame size; both resizes are ``kernels.resample.resize_bilinear`` (PyTorch's formula in Numba).
"""
from __future__ import annotations

import numpy as np

from edgerun.kernels.preprocess import Geometry
from edgerun.kernels.resample import resize_bilinear

from ..results import DepthMap
from ..session import ModelError, Session
from ..spec import ModelSpec
from .base import Task
from .options import DepthOptions

__all__ = ["DepthEstimator"]


class DepthEstimator(Task):
    """Depth estimation; ``estimate(image)`` -> ``DepthMap``. Thread-safe like Detector.

    ``DepthEstimator.from_path(path, threads=None, spin=None, providers=None, **spec_overrides)``.
    """

    Options = DepthOptions
    TASK = "depth"

    def __init__(self, session: Session, spec: ModelSpec, options: DepthOptions | None = None):
        if spec.task != "depth" or spec.head != "depth":
            raise ModelError(f"{session.path}: task {spec.task!r} / head {spec.head!r} is not a depth model")
        out = tuple(session.outputs[0].shape)
        hw = [d for d in out[-2:] if isinstance(d, int)]
        h, w = spec.input_size
        if (len(session.outputs) != 1 or len(out) not in (3, 4) or (len(out) == 4 and out[1] not in (1, None))
                or (len(hw) == 2 and hw[0] * w != hw[1] * h)):  # a map with the input's aspect ratio
            raise ModelError(f"{session.path}: expected one (N, 1, H, W) or (N, H, W) depth output, got "
                             f"{[tuple(o.shape) for o in session.outputs]}")
        super().__init__(session, spec, options)

    def postprocess(self, outputs: list[np.ndarray], geometry: Geometry, batch_index: int = 0) -> DepthMap:
        """Depth output -> (src_h, src_w) float32: bilinear (align_corners=True) to the input, then the frame."""
        d = np.asarray(outputs[0][batch_index], np.float32)
        d = np.ascontiguousarray(d if d.ndim == 3 else d[None])
        if d.ndim != 3 or d.shape[0] != 1:
            raise ModelError(f"{self.session.path}: expected a (1, H, W) depth map per image, got {d.shape}")
        g = geometry
        if d.shape[1:] != (g.dst_h, g.dst_w):
            d = resize_bilinear(d, (g.dst_h, g.dst_w), align_corners=True)
        if d.shape[1:] != (g.src_h, g.src_w):
            d = resize_bilinear(d, (g.src_h, g.src_w), align_corners=True)
        return DepthMap(d[0])

    def estimate(self, image: np.ndarray, pixel_format: str = "bgr") -> DepthMap:
        """Depth map of one frame (same pixel formats as ``Detector.detect``)."""
        return self.run(image, pixel_format)

    def __repr__(self) -> str:
        return f"DepthEstimator(input={self.spec.input_size}, resize={self.spec.resize})"
