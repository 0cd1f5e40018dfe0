"""Instance masks from YOLOv8-seg prototypes as Ultralytics 8.4 maps them to the image, computing only
what a box can cover.

Ultralytics' default (``retina_masks=False``) is two bilinear steps (PyTorch ``interpolate``,
``align_corners=False``: half-pixel centres, clamped edges) with a threshold after each:

1. ``process_mask(upsample=True)``: the logits ``coef @ protos`` are upsampled from the prototype grid to
   the tensor size, thresholded ``> 0`` and cropped to the box in tensor pixels (``crop_mask``:
   ``x1 <= px < x2``). An object whose mask is then empty is dropped by its predictor.
2. ``scale_masks``: the letterboxed content of that binary mask (padding of the rounded resize,
   ``round(pad - 0.1)``) is upsampled to the source image, then ``> 0.5``.

Both steps are evaluated only inside the box (plus the one-pixel ring bilinear taps reach), with
PyTorch's float32 weights and summation order. There is never a float stack of (N, H, W): one
(mh, mw) float32 scratch and one tensor-sized uint8 scratch are reused box after box.

``mode="proto"`` skips both upsamples: boolean masks of the letterboxed region at prototype resolution
(``logit > 0`` inside the box scaled to the grid: ``process_mask(upsample=False)``), for callers that
resize themselves.
"""
from __future__ import annotations

import math

import numpy as np

from . import checks
from ._jit import inner, jit
from .errors import EdgerunValueError

__all__ = ["process_masks", "proto_region", "content_region", "MASK_MODES"]

MASK_MODES = ("full", "proto")


# ------------------------------------------------------------------------------ kernels
@inner
def _box_range(lo, hi, n):
    """Pixel indices p with lo <= p < hi, as an inclusive range clipped to [0, n) (may be empty)."""
    a = max(0, int(math.ceil(lo)))
    b = min(n - 1, int(math.ceil(hi)) - 1)
    return a, b


@inner
def _logits(protos, coef, i, y0, y1, x0, x1, scratch):
    """scratch[y, x] = coef[i] . protos[:, y, x] over the inclusive rectangle (float32 sums)."""
    for y in range(y0, y1 + 1):
        for x in range(x0, x1 + 1):
            acc = np.float32(0.0)
            for m in range(protos.shape[0]):
                acc += coef[i, m] * protos[m, y, x]
            scratch[y, x] = acc


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


@inner
def _tensor_mask(logit, y0, y1, x0, x1, py0, py1, pwy0, pwy1, px0, px1, pwx0, pwx1, binary):
    """Step 1 inside the box: binary[y, x] = bilinear(logit) > 0 (PyTorch's blend: width, then height),
    0 on the one-pixel ring around the box. Returns whether any pixel is set."""
    th, tw = binary.shape
    for y in range(max(0, y0 - 1), min(th, y1 + 2)):
        for x in range(max(0, x0 - 1), min(tw, x1 + 2)):
            binary[y, x] = 0
    found = False
    for y in range(y0, y1 + 1):
        r0, r1, a0, a1 = py0[y], py1[y], pwy0[y], pwy1[y]
        for x in range(x0, x1 + 1):
            c0, c1, b0, b1 = px0[x], px1[x], pwx0[x], pwx1[x]
            v = (logit[r0, c0] * b0 + logit[r0, c1] * b1) * a0 + (logit[r1, c0] * b0 + logit[r1, c1] * b1) * a1
            if v > np.float32(0.0):
                binary[y, x] = 1
                found = True
    return found


@jit
def _masks_full_kernel(protos, coef, boxes, ptaps_y, ptaps_x, wy, wx, qtaps_y, qtaps_x, vy, vx,
                       logit, binary, out, nonempty):
    """out[i] (H, W) bool and nonempty[i]: Ultralytics' two steps for each box (see the module doc).
    ``ptaps_*`` (2, n) int64 / ``w*`` (2, n) float32: prototype -> tensor taps and weights per tensor
    row/column; ``qtaps_*`` / ``v*``: tensor-content -> source taps (absolute tensor indices)."""
    th, tw = binary.shape
    for i in range(coef.shape[0]):
        nonempty[i] = False
        y0, y1 = _box_range(boxes[i, 1], boxes[i, 3], th)
        x0, x1 = _box_range(boxes[i, 0], boxes[i, 2], tw)
        if y0 > y1 or x0 > x1:
            continue
        _logits(protos, coef, i, ptaps_y[0, y0], ptaps_y[1, y1], ptaps_x[0, x0], ptaps_x[1, x1], logit)
        if not _tensor_mask(logit, y0, y1, x0, x1, ptaps_y[0], ptaps_y[1], wy[0], wy[1],
                            ptaps_x[0], ptaps_x[1], wx[0], wx[1], binary):
            continue
        nonempty[i] = True
        ya, yb = _span(qtaps_y[0], qtaps_y[1], y0, y1)
        xa, xb = _span(qtaps_x[0], qtaps_x[1], x0, x1)
        for yy in range(ya, yb):
            r0, r1, a0, a1 = qtaps_y[0, yy], qtaps_y[1, yy], vy[0, yy], vy[1, yy]
            for xx in range(xa, xb):
                c0, c1 = qtaps_x[0, xx], qtaps_x[1, xx]
                s = binary[r0, c0] + binary[r0, c1] + binary[r1, c0] + binary[r1, c1]
                if s == 0:
                    continue
                if s == 4:
                    out[i, yy, xx] = True
                    continue
                b0, b1 = vx[0, xx], vx[1, xx]
                v = (np.float32(binary[r0, c0]) * b0 + np.float32(binary[r0, c1]) * b1) * a0 + \
                    (np.float32(binary[r1, c0]) * b0 + np.float32(binary[r1, c1]) * b1) * a1
                out[i, yy, xx] = v > np.float32(0.5)


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
def content_region(h: int, w: int, src_h: int, src_w: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of a ``src_h x src_w`` image letterboxed (centred) in an (h, w) grid,
    as Ultralytics 8.4's ``scale_masks`` computes it: gain ``min(h / src_h, w / src_w)``, content
    ``max(round(src * gain), 1)`` per axis, padding ``round((grid - content) / 2 - 0.1)``."""
    gain = min(h / src_h, w / src_w)
    ch, cw = max(round(src_h * gain), 1), max(round(src_w * gain), 1)
    top, left = round((h - ch) / 2 - 0.1), round((w - cw) / 2 - 0.1)
    return top, left, top + ch, left + cw


def proto_region(mh: int, mw: int, src_h: int, src_w: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the image inside an (mh, mw) letterboxed prototype grid."""
    return content_region(mh, mw, src_h, src_w)


def _taps(n_in: int, n_out: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch bilinear (align_corners=False, no antialias) taps for n_out outputs over n_in inputs:
    ((2, n_out) int64 indices + offset, (2, n_out) float32 weights), float32 index arithmetic as
    ATen's ``area_pixel_compute_source_index`` / ``guard_index_and_lambda``."""
    scale = np.float32(n_in) / np.float32(n_out)
    s = scale * (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    s = np.maximum(s, np.float32(0.0))
    i0 = np.minimum(np.floor(s).astype(np.int64), n_in - 1)
    lam = np.clip(s - i0.astype(np.float32), np.float32(0.0), np.float32(1.0)).astype(np.float32)
    i1 = i0 + (i0 < n_in - 1)
    return np.stack([i0, i1]) + offset, np.stack([np.float32(1.0) - lam, lam]).astype(np.float32)


def _inputs(protos, coefficients, xyxy):
    p = checks.array("protos", protos, (np.float32, np.float16), (3, 4))
    if p.ndim == 4:
        if p.shape[0] != 1:
            raise EdgerunValueError(f"protos: expected batch size 1, got shape {protos.shape}")
        p = p[0]
    c = checks.array("coefficients", coefficients, np.float32, 2)
    b = checks.array("xyxy", xyxy, np.float32, 2)
    if c.shape[1] != p.shape[0] or b.shape != (c.shape[0], 4):
        raise EdgerunValueError(f"coefficients/xyxy: expected (K, {p.shape[0]}) and (K, 4), got "
                                f"{c.shape} and {b.shape}")
    if min(p.shape) == 0:
        raise EdgerunValueError(f"protos: expected a non-empty (M, mh, mw) grid, got shape {p.shape}")
    return p.astype(np.float32, copy=False), c, b


def process_masks(protos: np.ndarray, coefficients: np.ndarray, xyxy: np.ndarray, geometry, *,
                  mode: str = "full", out: np.ndarray | None = None,
                  nonempty: np.ndarray | None = None) -> np.ndarray:
    """Boolean instance masks from prototypes ``(M, mh, mw)`` (or ``(1, M, mh, mw)``), mask
    coefficients ``(K, M)`` and boxes ``(K, 4)`` xyxy in *tensor* pixels (before ``scale_boxes``).

    ``geometry`` (``kernels.preprocess.Geometry``, centred letterbox) gives the tensor and source sizes.
    mode "full": ``(K, src_h, src_w)`` bool, Ultralytics' default masks mapped to the image; "proto":
    ``(K, bh, bw)`` bool over the letterboxed region of the prototype grid (``proto_region``). ``out``
    (C-contiguous bool of that shape) is reused. ``nonempty`` ((K,) bool, written when given): whether the
    object's mask at tensor resolution (full) or prototype resolution (proto) has any pixel; Ultralytics
    drops the objects where it has none.
    """
    if mode not in MASK_MODES:
        raise EdgerunValueError(f"mode: expected one of {MASK_MODES}, got {mode!r}")
    p, c, b = _inputs(protos, coefficients, xyxy)
    k = c.shape[0]
    flags = checks.out_buffer("nonempty", nonempty, (k,), np.bool_)
    mh, mw = p.shape[1:]
    th, tw = geometry.dst_h, geometry.dst_w
    if mode == "proto":
        boxes = b * np.array([mw / tw, mh / th] * 2, np.float32)
        top, left, bottom, right = proto_region(mh, mw, geometry.src_h, geometry.src_w)
        o = checks.out_buffer("out", out, (k, bottom - top, right - left), np.bool_)
        o.fill(False)
        _masks_proto_kernel(p, c, boxes, top, left, o)
        flags[:] = o.reshape(k, -1).any(1)
        return o
    o = checks.out_buffer("out", out, (k, geometry.src_h, geometry.src_w), np.bool_)
    o.fill(False)
    py, wy = _taps(mh, th)
    px, wx = _taps(mw, tw)
    top, left, bottom, right = content_region(th, tw, geometry.src_h, geometry.src_w)
    qy, vy = _taps(bottom - top, geometry.src_h, top)
    qx, vx = _taps(right - left, geometry.src_w, left)
    _masks_full_kernel(p, c, b, py, px, wy, wx, qy, qx, vy, vx, np.zeros((mh, mw), np.float32),
                       np.zeros((th, tw), np.uint8), o, flags)
    return o
