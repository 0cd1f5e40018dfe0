"""Instance masks from YOLOv8-seg prototypes, computing only what a box can cover.

Per object: ``sigmoid(coef @ protos)`` only at the prototype pixels inside its box (Ultralytics
``crop_mask``: ``x1 <= px < x2`` with the box scaled to prototype resolution; zero outside), then a
bilinear upsample (PyTorch ``interpolate(align_corners=False)``: half-pixel centres, clamped) of the
letterboxed region of the prototype grid (Ultralytics ``scale_masks`` crop) to the source image, then
``> 0.5``. Only source pixels with at least one tap inside the box are evaluated; there is never a
float stack of (N, H, W) or even (N, mh, mw): one (mh, mw) scratch is reused box after box.

``mode="proto"`` skips the upsample: boolean masks of the letterboxed region at prototype resolution
(``logit > 0``, the same test as ``sigmoid > 0.5``), for callers that resize themselves.
"""
from __future__ import annotations

import math

import numpy as np

from . import checks as _check  # the shared validators (kernels/checks.py)
from ._jit import inner, jit
from .errors import EdgerunValueError

__all__ = ["process_masks", "proto_region", "MASK_MODES"]

MASK_MODES = ("full", "proto")


# ------------------------------------------------------------------------------ kernels
@inner
def _box_range(lo, hi, n):
    """Pixel indices p with lo <= p < hi, as an inclusive range clipped to [0, n) (may be empty)."""
    a = max(0, int(math.ceil(lo)))
    b = min(n - 1, int(math.ceil(hi)) - 1)
    return a, b


@inner
def _fill_box(protos, coef, i, y0, y1, x0, x1, scratch):
    """scratch[y, x] = sigmoid(coef[i] . protos[:, y, x]) inside the box, 0 on a 1-pixel ring."""
    mh, mw = scratch.shape
    for y in range(max(0, y0 - 1), min(mh, y1 + 2)):
        for x in range(max(0, x0 - 1), min(mw, x1 + 2)):
            scratch[y, x] = 0.0
    for y in range(y0, y1 + 1):
        for x in range(x0, x1 + 1):
            acc = np.float32(0.0)
            for m in range(protos.shape[0]):
                acc += coef[i, m] * protos[m, y, x]
            scratch[y, x] = np.float32(1.0) / (np.float32(1.0) + np.exp(-acc))


@inner
def _span(t0, t1, lo, hi):
    """Output indices whose taps (t0 <= t1, non-decreasing) touch [lo, hi]: (first, last + 1)."""
    n = t0.shape[0]
    a = 0
    while a < n and t1[a] < lo:
        a += 1
    b = a
    while b < n and t0[b] <= hi:
        b += 1
    return a, b


@jit
def _masks_full_kernel(protos, coef, boxes, ty0, ty1, wy, tx0, tx1, wx, scratch, row, out):
    """out[i] (H, W) bool: bilinear (taps ty*/tx*, weights of the second tap) of the cropped map > 0.5.
    Separable: per output row, blend the two prototype rows once into ``row``, then lerp along x."""
    mh, mw = scratch.shape
    for i in range(coef.shape[0]):
        y0, y1 = _box_range(boxes[i, 1], boxes[i, 3], mh)
        x0, x1 = _box_range(boxes[i, 0], boxes[i, 2], mw)
        if y0 > y1 or x0 > x1:
            continue
        _fill_box(protos, coef, i, y0, y1, x0, x1, scratch)
        ya, yb = _span(ty0, ty1, y0, y1)
        xa, xb = _span(tx0, tx1, x0, x1)
        if ya >= yb or xa >= xb:  # the box covers no output pixel (e.g. it lies in the padding)
            continue
        c_lo, c_hi = tx0[xa], tx1[xb - 1]
        for yy in range(ya, yb):
            r0, r1, b = ty0[yy], ty1[yy], wy[yy]
            for c in range(c_lo, c_hi + 1):
                row[c] = scratch[r0, c] + b * (scratch[r1, c] - scratch[r0, c])
            for xx in range(xa, xb):
                c0, c1 = tx0[xx], tx1[xx]
                out[i, yy, xx] = row[c0] + wx[xx] * (row[c1] - row[c0]) > np.float32(0.5)


@jit
def _masks_proto_kernel(protos, coef, boxes, top, left, out):
    """out[i] (bh, bw) bool: logit > 0 inside the box, over the letterboxed prototype region."""
    mh, mw = protos.shape[1], protos.shape[2]
    for i in range(coef.shape[0]):
        y0, y1 = _box_range(boxes[i, 1], boxes[i, 3], mh)
        x0, x1 = _box_range(boxes[i, 0], boxes[i, 2], mw)
        for y in range(max(y0, top), min(y1 + 1, top + out.shape[1])):
            for x in range(max(x0, left), min(x1 + 1, left + out.shape[2])):
                acc = np.float32(0.0)
                for m in range(protos.shape[0]):
                    acc += coef[i, m] * protos[m, y, x]
                out[i, y - top, x - left] = acc > 0


# ----------------------------------------------------------------------------- wrappers
def proto_region(mh: int, mw: int, src_h: int, src_w: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the image inside an (mh, mw) letterboxed grid (Ultralytics
    ``scale_masks``: centred padding, ``round(pad -/+ 0.1)``)."""
    gain = min(mh / src_h, mw / src_w)
    pw, ph = (mw - src_w * gain) / 2, (mh - src_h * gain) / 2
    top, left = int(round(ph - 0.1)), int(round(pw - 0.1))
    return top, left, mh - int(round(ph + 0.1)), mw - int(round(pw + 0.1))


def _taps(n_in: int, n_out: int, offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PyTorch bilinear (align_corners=False) source taps for n_out outputs over n_in inputs (float32)."""
    scale = np.float32(n_in / n_out)
    s = ((np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)).clip(0)
    i0 = np.floor(s).astype(np.int64)
    i0 = np.minimum(i0, n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0 + offset, i1 + offset, (s - i0).astype(np.float32)


def _inputs(protos, coefficients, xyxy):
    p = _check.array("protos", protos, (np.float32, np.float16), (3, 4))
    if p.ndim == 4:
        if p.shape[0] != 1:
            raise EdgerunValueError(f"protos: expected batch size 1, got shape {protos.shape}")
        p = p[0]
    c = _check.array("coefficients", coefficients, np.float32, 2)
    b = _check.array("xyxy", xyxy, np.float32, 2)
    if c.shape[1] != p.shape[0] or b.shape != (c.shape[0], 4):
        raise EdgerunValueError(f"coefficients/xyxy: expected (K, {p.shape[0]}) and (K, 4), got "
                                f"{c.shape} and {b.shape}")
    if min(p.shape) == 0:
        raise EdgerunValueError(f"protos: expected a non-empty (M, mh, mw) grid, got shape {p.shape}")
    return p.astype(np.float32, copy=False), c, b


def process_masks(protos: np.ndarray, coefficients: np.ndarray, xyxy: np.ndarray, geometry, *,
                  mode: str = "full", out: np.ndarray | None = None) -> np.ndarray:
    """Boolean instance masks from prototypes ``(M, mh, mw)`` (or ``(1, M, mh, mw)``), mask
    coefficients ``(K, M)`` and boxes ``(K, 4)`` xyxy in *tensor* pixels (before ``scale_boxes``).

    ``geometry`` (``kernels.preprocess.Geometry``, centred letterbox) gives the tensor and source sizes.
    mode "full": ``(K, src_h, src_w)`` bool; "proto": ``(K, bh, bw)`` bool over the letterboxed region
    of the prototype grid (``proto_region``). ``out`` (C-contiguous bool of that shape) is reused.
    """
    if mode not in MASK_MODES:
        raise EdgerunValueError(f"mode: expected one of {MASK_MODES}, got {mode!r}")
    p, c, b = _inputs(protos, coefficients, xyxy)
    mh, mw = p.shape[1:]
    boxes = b * np.array([mw / geometry.dst_w, mh / geometry.dst_h] * 2, np.float32)
    top, left, bottom, right = proto_region(mh, mw, geometry.src_h, geometry.src_w)
    if mode == "proto":
        o = _check.out_buffer("out", out, (c.shape[0], bottom - top, right - left), np.bool_)
        o.fill(False)
        _masks_proto_kernel(p, c, boxes, top, left, o)
        return o
    o = _check.out_buffer("out", out, (c.shape[0], geometry.src_h, geometry.src_w), np.bool_)
    o.fill(False)
    ty0, ty1, wy = _taps(bottom - top, geometry.src_h, top)
    tx0, tx1, wx = _taps(right - left, geometry.src_w, left)
    _masks_full_kernel(p, c, boxes, ty0, ty1, wy, tx0, tx1, wx, np.zeros((mh, mw), np.float32),
                       np.zeros(mw, np.float32), o)
    return o
