"""Keypoints of kept detections: gather from the raw head by anchor index, map back, clip (one pass).

For YOLOv8/11-pose heads ``(4 + C + K*D, N)``: keypoint k of anchor a is at rows
``first_row + k*D + (0, 1[, 2])`` (x, y in tensor pixels, conf already sigmoided). Mapping back follows
Ultralytics ``scale_coords``: ``x_src = (x - pad_x) / scale_x`` in float32, then clipped to
``[0, src_w] x [0, src_h]`` (NaN -> 0, as ``scale_boxes`` does).
"""
from __future__ import annotations

import numpy as np

from . import checks
from ._jit import jit
from .boxes import clip_coord, geometry_values
from .errors import EdgerunValueError

__all__ = ["gather_keypoints", "scale_points"]


@jit
def _keypoints_kernel(raw, index, row0, dims, px, py, sx, sy, src_w, src_h, clip, xy, conf):
    """xy (M, K, 2) / conf (M, K) of the anchors in ``index`` from the (rows, N) float32 head."""
    for i in range(index.shape[0]):
        a = index[i]
        for k in range(xy.shape[1]):
            r = row0 + k * dims
            x = (raw[r, a] - px) / sx
            y = (raw[r + 1, a] - py) / sy
            if clip:
                x, y = clip_coord(x, src_w), clip_coord(y, src_h)
            xy[i, k, 0], xy[i, k, 1] = x, y
            conf[i, k] = raw[r + 2, a] if dims == 3 else np.float32(1.0)


def _as_rows(output) -> np.ndarray:
    x = checks.array("output", output, (np.float32, np.float16), (2, 3))
    if x.ndim == 3:
        if x.shape[0] != 1:
            raise EdgerunValueError(f"output: expected batch size 1, got shape {output.shape}")
        x = x[0]
    return x


def gather_keypoints(output: np.ndarray, index: np.ndarray, geometry, *, first_row: int,
                     num_keypoints: int, dims: int = 3, clip: bool = True
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints of the anchors ``index`` from a ``(1, rows, N)`` or ``(rows, N)`` head.

    Returns ``(xy (M, K, 2) float32 source pixels, conf (M, K) float32)``; conf is 1 when ``dims == 2``.
    ``geometry``: the preprocessing geometry (``kernels.preprocess.Geometry``).
    """
    x = _as_rows(output)
    idx = checks.array("index", index, (np.int32, np.int64), 1)
    k = checks.positive_int("num_keypoints", num_keypoints)
    if dims not in (2, 3):
        raise EdgerunValueError(f"dims: expected 2 (x, y) or 3 (x, y, conf), got {dims}")
    if first_row < 0 or first_row + k * dims > x.shape[0]:
        raise EdgerunValueError(f"first_row: rows {first_row}..{first_row + k * dims} do not fit an output "
                                f"with {x.shape[0]} rows (num_keypoints={k}, dims={dims})")
    if idx.size and (idx.min() < 0 or idx.max() >= x.shape[1]):
        raise EdgerunValueError(f"index: expected anchor indices in [0, {x.shape[1]}), got "
                                f"{idx.min()}..{idx.max()}")
    if x.dtype == np.float16:  # only the few kept columns are widened
        x = x[first_row:first_row + k * dims][:, idx].astype(np.float32)
        first_row, idx = 0, np.arange(idx.size, dtype=np.int64)
    src_h, src_w, sx, sy, px, py = geometry_values(geometry)
    xy = np.empty((idx.size, k, 2), np.float32)
    conf = np.empty((idx.size, k), np.float32)
    f = np.float32
    _keypoints_kernel(x, idx, int(first_row), int(dims), f(px), f(py), f(sx), f(sy), f(src_w), f(src_h),
                      bool(clip), xy, conf)
    return xy, conf


@jit
def _scale_points_kernel(pts, px, py, sx, sy, src_w, src_h, clip, out):
    for i in range(pts.shape[0]):
        for k in range(pts.shape[1]):
            x = (pts[i, k, 0] - px) / sx
            y = (pts[i, k, 1] - py) / sy
            if clip:
                x, y = clip_coord(x, src_w), clip_coord(y, src_h)
            out[i, k, 0], out[i, k, 1] = x, y


def scale_points(points: np.ndarray, geometry, *, clip: bool = True, out: np.ndarray | None = None
                 ) -> np.ndarray:
    """Tensor-pixel points (N, K, 2) float32 -> source pixels (``scale_boxes`` for points; clipped)."""
    pts = checks.array("points", points, np.float32, 3)
    if pts.shape[2] != 2:
        raise EdgerunValueError(f"points: expected shape (N, K, 2), got {pts.shape}")
    src_h, src_w, sx, sy, px, py = geometry_values(geometry)
    out = checks.out_buffer("out", out, pts.shape, np.float32)
    f = np.float32
    _scale_points_kernel(pts, f(px), f(py), f(sx), f(sy), f(src_w), f(src_h), bool(clip), out)
    return out
