"""Resampling as the frameworks Ultralytics runs on do it: Pillow's antialiased bilinear resize of uint8
images (what torchvision's ``Resize`` does to a PIL image, i.e. Ultralytics' ``classify_transforms``) and
PyTorch's ``F.interpolate`` on float maps (bilinear, ``align_corners`` False or True; nearest).

- ``pil_resize``: Pillow's ``Image.resize(..., BILINEAR)`` (a triangle filter widened by the downscale
  factor, so it averages every source pixel it covers), bit for bit: double-precision weights per output
  pixel normalised to sum 1, 22-bit fixed point, horizontal pass first (rounded to uint8), then vertical.
  ``region`` computes only part of the output (a centre crop) with the full-size output's weights.
- ``resize_bilinear``: ``F.interpolate(x, size, mode="bilinear", align_corners=...)`` on (C, H, W)
  float32, float32 index/weight tables as PyTorch's CPU kernel computes them.
- ``bilinear_argmax``: ``resize_bilinear`` (align_corners=False) then the first-maximum class per pixel,
  fused so the (C, H, W) frame-sized scores are never stored.
- ``nearest_index``: PyTorch's ``mode="nearest"`` source index per output index.
"""
from __future__ import annotations

import functools

import numpy as np

from . import checks
from ._jit import inner, jit
from .errors import EdgerunValueError

__all__ = ["pil_resize", "resize_bilinear", "bilinear_argmax", "nearest_index"]

_PRECISION_BITS = 22  # Pillow: 32 - 8 (uint8) - 2


# ------------------------------------------------------------------------------ kernels
@jit
def _pil_kernel(src, hb, hk, vb, vk, y_first, tmp, out):
    """Horizontal pass over source rows y_first.. into tmp (uint8), then vertical pass into out; int32 sums
    as Pillow's, the channels of a pixel together."""
    for y in range(tmp.shape[0]):
        sy = y + y_first
        for xx in range(hb.shape[0]):
            _pil_taps(src[sy], hb[xx, 0], hb[xx, 1], hk[xx], tmp[y, xx])
    half = np.int32(1 << (_PRECISION_BITS - 1))
    acc = np.empty((out.shape[1], out.shape[2]), np.int32)  # one output row, rows of tmp added in turn
    for yy in range(vb.shape[0]):
        y0 = vb[yy, 0] - y_first
        acc[:] = half
        for i in range(vb[yy, 1]):
            w = vk[yy, i]
            row = tmp[y0 + i]
            for xx in range(acc.shape[0]):
                for c in range(acc.shape[1]):
                    acc[xx, c] += np.int32(row[xx, c]) * w
        for xx in range(acc.shape[0]):
            for c in range(acc.shape[1]):
                out[yy, xx, c] = min(max(acc[xx, c] >> _PRECISION_BITS, 0), 255)


@inner
def _pil_taps(line, first, n, k, dst):
    """dst[c] = clip8(sum_i line[first + i, c] * k[i]) in Pillow's 22-bit fixed point (1, 3 or any channels)."""
    half = np.int32(1 << (_PRECISION_BITS - 1))
    if line.shape[1] == 3:
        s0 = s1 = s2 = half
        for i in range(n):
            w = k[i]
            p = line[first + i]
            s0 += np.int32(p[0]) * w
            s1 += np.int32(p[1]) * w
            s2 += np.int32(p[2]) * w
        dst[0] = min(max(s0 >> _PRECISION_BITS, 0), 255)
        dst[1] = min(max(s1 >> _PRECISION_BITS, 0), 255)
        dst[2] = min(max(s2 >> _PRECISION_BITS, 0), 255)
        return
    for c in range(line.shape[1]):
        ss = half
        for i in range(n):
            ss += np.int32(line[first + i, c]) * k[i]
        dst[c] = min(max(ss >> _PRECISION_BITS, 0), 255)


@inner
def _lerp(src, c, yy, xx, y0, y1, wy, x0, x1, wx):
    """PyTorch's bilinear sample of channel c at output (yy, xx): h0 * (w0 * a + w1 * b) + h1 * (w0 * c + w1 * d)."""
    h1, w1 = wy[yy], wx[xx]
    h0, w0 = np.float32(1.0) - h1, np.float32(1.0) - w1
    ra, rb, a, b = y0[yy], y1[yy], x0[xx], x1[xx]
    return h0 * (w0 * src[c, ra, a] + w1 * src[c, ra, b]) + h1 * (w0 * src[c, rb, a] + w1 * src[c, rb, b])


@jit
def _bilinear_kernel(src, y0, y1, wy, x0, x1, wx, out):
    """(C, H, W) float32 -> (C, oh, ow)."""
    for c in range(src.shape[0]):
        for yy in range(out.shape[1]):
            for xx in range(out.shape[2]):
                out[c, yy, xx] = _lerp(src, c, yy, xx, y0, y1, wy, x0, x1, wx)


@jit
def _bilinear_argmax_kernel(src, y0, y1, wy, x0, x1, wx, out):
    """Per output pixel: interpolate every class, keep the first maximum (NaN never wins)."""
    for yy in range(out.shape[0]):
        for xx in range(out.shape[1]):
            best = np.float32(0.0)
            arg = -1
            for c in range(src.shape[0]):
                v = _lerp(src, c, yy, xx, y0, y1, wy, x0, x1, wx)
                if arg < 0 or v > best or (best != best and v == v):
                    best, arg = v, c
            out[yy, xx] = arg


# ------------------------------------------------------------------------------ tables
@functools.lru_cache(maxsize=64)
def _pil_coeffs(in_size: int, out_size: int, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` (bilinear) for outputs start..start+count:
    bounds (count, 2) int32 (first source index, taps) and fixed-point weights (count, ksize) int32.
    Plain Python floats are C doubles and the sums run in Pillow's order, so the weights are its own."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    ksize = int(np.ceil(support)) * 2 + 1
    ss = 1.0 / filterscale
    bounds = np.zeros((count, 2), np.int32)
    kk = np.zeros((count, ksize), np.int32)
    for j, xx in enumerate(range(start, start + count)):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        w = []
        for x in range(xmax):
            t = abs((x + xmin - center + 0.5) * ss)
            w.append(1.0 - t if t < 1.0 else 0.0)
        total = 0.0
        for v in w:
            total += v
        for x, v in enumerate(w):
            v = v / total if total != 0.0 else v
            kk[j, x] = int(-0.5 + v * (1 << _PRECISION_BITS)) if v < 0 else int(0.5 + v * (1 << _PRECISION_BITS))
        bounds[j] = xmin, xmax
    bounds.flags.writeable = kk.flags.writeable = False
    return bounds, kk


@functools.lru_cache(maxsize=64)
def _linear_taps(in_size: int, out_size: int, align_corners: bool):
    """PyTorch's bilinear source taps per output index: i0, i1 (int64) and the weight of i1 (float32)."""
    d = np.arange(out_size, dtype=np.float32)
    if align_corners:
        scale = np.float32((in_size - 1) / (out_size - 1)) if out_size > 1 else np.float32(0)
        src = scale * d
    else:
        scale = np.float32(in_size) / np.float32(out_size)
        src = np.maximum(scale * (d + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    i0 = src.astype(np.int64)
    lam = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
    i1 = i0 + (i0 < in_size - 1)
    for a in (i0, i1, lam):
        a.flags.writeable = False
    return i0, i1, lam


def nearest_index(in_size: int, out_size: int) -> np.ndarray:
    """PyTorch's ``mode="nearest"`` source index of each of ``out_size`` outputs (int64)."""
    in_size, out_size = checks.positive_int("in_size", in_size), checks.positive_int("out_size", out_size)
    d = np.arange(out_size, dtype=np.int64)
    if out_size == in_size:
        return d
    if out_size == 2 * in_size:
        return d >> 1
    scale = np.float32(in_size) / np.float32(out_size)
    return np.minimum(np.floor(d.astype(np.float32) * scale).astype(np.int64), in_size - 1)


# ----------------------------------------------------------------------------- wrappers
def _size(size) -> tuple[int, int]:
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise EdgerunValueError(f"size: expected (height, width), got {size!r}")
    return checks.positive_int("size[0]", size[0]), checks.positive_int("size[1]", size[1])


def pil_resize(image: np.ndarray, size, region: tuple[int, int, int, int] | None = None,
               out: np.ndarray | None = None) -> np.ndarray:
    """Pillow's bilinear ``resize`` of a uint8 (H, W, C) or (H, W) image to ``size`` = (height, width).

    ``region`` = (top, left, height, width) of the output to compute (default: all of it), e.g. a
    centre crop; the result is that region, written into ``out`` when given (uint8, C-contiguous)."""
    image = checks.array("image", image, np.uint8, (2, 3))
    if image.shape[0] == 0 or image.shape[1] == 0 or image.size == 0:
        raise EdgerunValueError(f"image: expected a non-empty image, got shape {image.shape}")
    img = image if image.ndim == 3 else image[:, :, None]
    oh, ow = _size(size)
    top, left, rh, rw = (0, 0, oh, ow) if region is None else tuple(int(v) for v in region)
    if rh <= 0 or rw <= 0 or top < 0 or left < 0 or top + rh > oh or left + rw > ow:
        raise EdgerunValueError(f"region: expected (top, left, height, width) inside the {oh}x{ow} output, "
                                f"got {region}")
    shape = (rh, rw) + image.shape[2:]
    res = checks.out_buffer("out", out, shape, np.uint8)
    hb, hk = _pil_coeffs(img.shape[1], ow, left, rw)
    vb, vk = _pil_coeffs(img.shape[0], oh, top, rh)
    y_first = int(vb[0, 0])
    y_last = int((vb[:, 0] + vb[:, 1]).max())
    tmp = np.empty((y_last - y_first, rw, img.shape[2]), np.uint8)
    _pil_kernel(img, hb, hk, vb, vk, y_first, tmp, res if res.ndim == 3 else res[:, :, None])
    return res


def _float_maps(name: str, x) -> np.ndarray:
    x = checks.array(name, x, np.float32, 3)
    if 0 in x.shape:
        raise EdgerunValueError(f"{name}: expected non-empty (C, H, W) maps, got shape {x.shape}")
    return x


def resize_bilinear(x: np.ndarray, size, align_corners: bool = False, out: np.ndarray | None = None
                    ) -> np.ndarray:
    """``F.interpolate(x[None], size, mode="bilinear", align_corners=...)[0]`` for (C, H, W) float32."""
    x = _float_maps("x", x)
    oh, ow = _size(size)
    res = checks.out_buffer("out", out, (x.shape[0], oh, ow), np.float32)
    ty = _linear_taps(x.shape[1], oh, bool(align_corners))
    tx = _linear_taps(x.shape[2], ow, bool(align_corners))
    _bilinear_kernel(x, *ty, *tx, res)
    return res


def bilinear_argmax(x: np.ndarray, size, out: np.ndarray | None = None) -> np.ndarray:
    """First-maximum class per pixel of ``resize_bilinear(x, size)`` (align_corners=False), as uint8
    (H, W), without storing the resized scores. At most 256 classes."""
    x = _float_maps("x", x)
    if x.shape[0] > 256:
        raise EdgerunValueError(f"x: at most 256 classes fit a uint8 label map, got {x.shape[0]}")
    oh, ow = _size(size)
    res = checks.out_buffer("out", out, (oh, ow), np.uint8)
    _bilinear_argmax_kernel(x, *_linear_taps(x.shape[1], oh, False), *_linear_taps(x.shape[2], ow, False), res)
    return res
