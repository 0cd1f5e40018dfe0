"""Map boxes from tensor pixels back to source-image pixels (Ultralytics ``scale_boxes`` + ``clip_boxes``)."""
from __future__ import annotations

import numpy as np

from . import checks
from ._jit import inner, jit
from .errors import EdgerunTypeError, EdgerunValueError

__all__ = ["scale_boxes", "clip_coord", "geometry_values"]

_GEOMETRY_FIELDS = ("src_h", "src_w", "scale_x", "scale_y", "pad_x", "pad_y")


@inner
def clip_coord(v, hi):
    """Clamp to [0, hi]; NaN becomes 0 so a clipped box is never NaN (an inner kernel: call it
    from njit code, e.g. the keypoint kernels)."""
    if not v > 0:
        return np.float32(0.0)
    return hi if v > hi else v


@jit
def _scale_kernel(xyxy, pad_x, pad_y, scale_x, scale_y, src_w, src_h, clip, out):
    """out = (xyxy - pad) / scale per coordinate, then clipped to the source image if ``clip``."""
    for i in range(xyxy.shape[0]):
        x1 = (xyxy[i, 0] - pad_x) / scale_x
        y1 = (xyxy[i, 1] - pad_y) / scale_y
        x2 = (xyxy[i, 2] - pad_x) / scale_x
        y2 = (xyxy[i, 3] - pad_y) / scale_y
        if clip:
            x1, x2 = clip_coord(x1, src_w), clip_coord(x2, src_w)
            y1, y2 = clip_coord(y1, src_h), clip_coord(y2, src_h)
        out[i, 0], out[i, 1], out[i, 2], out[i, 3] = x1, y1, x2, y2


def geometry_values(geometry) -> tuple[float, ...]:
    """(src_h, src_w, scale_x, scale_y, pad_x, pad_y) of a Geometry-like object, validated (finite,
    sizes and scales > 0): the mapping ``scale_boxes`` and the keypoint kernels undo."""
    missing = [f for f in _GEOMETRY_FIELDS if not hasattr(geometry, f)]
    if missing:
        raise EdgerunTypeError(f"geometry: expected an object with {', '.join(_GEOMETRY_FIELDS)} (e.g. "
                               f"kernels.preprocess.Geometry), got {type(geometry).__name__} without "
                               f"{', '.join(missing)}")
    vals = {f: checks.finite_float(f"geometry.{f}", getattr(geometry, f)) for f in _GEOMETRY_FIELDS}
    for f in ("src_h", "src_w", "scale_x", "scale_y"):
        if vals[f] <= 0:
            raise EdgerunValueError(f"geometry.{f}: expected > 0, got {vals[f]}")
    return tuple(vals[f] for f in _GEOMETRY_FIELDS)


def scale_boxes(xyxy: np.ndarray, geometry, *, clip: bool = True, out: np.ndarray | None = None) -> np.ndarray:
    """Tensor-pixel boxes (N, 4) float32 -> source-image pixels: x_src = (x - pad_x) / scale_x, y likewise.

    With ``clip`` the result is clamped to [0, src_w] x [0, src_h] (Ultralytics ``clip_boxes``; NaN -> 0).
    ``geometry`` is any object with src_h, src_w, scale_x, scale_y, pad_x, pad_y. ``out`` may be ``xyxy``.
    Arithmetic is float32, as Ultralytics does it on float32 tensors.
    """
    xyxy = checks.array("xyxy", xyxy, np.float32, 2)
    if xyxy.shape[1] != 4:
        raise EdgerunValueError(f"xyxy: expected shape (N, 4), got {xyxy.shape}")
    src_h, src_w, sx, sy, px, py = geometry_values(geometry)
    out = checks.out_buffer("out", out, xyxy.shape, np.float32)
    f32 = np.float32
    _scale_kernel(xyxy, f32(px), f32(py), f32(sx), f32(sy), f32(src_w), f32(src_h), bool(clip), out)
    return out
