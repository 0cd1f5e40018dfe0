"""Compiled row kernels behind ``preprocess.letterbox``: camera frames (BGR/RGB/gray, NV12/NV21/I420,
YUYV) -> tensor rows, bit-exact with cv2.resize(INTER_LINEAR) (+ cv2.cvtColor for YUV) in one pass, and
``pack_kernel`` for frames OpenCV already converted and resampled (``preprocess._pack_source`` picks).

Inputs are trusted (``preprocess`` validates them and builds the tap and value tables); outputs are
written in place, ``o[c, y, x]`` (a CHW array or a transposed HWC view, channel order already
applied by the caller through ``o`` and ``lut``).
"""
from __future__ import annotations

import numpy as np
from numba import uintp

from ._jit import inner, jit

__all__ = ["bgr_kernel", "yuv_kernel", "pack_kernel", "yuv_decimate_kernel"]

# Output rows take one of three paths (``_row_mode``):
# 0 nearest, every weight 2048/0 (integer downscale, e.g. 1080p -> 640): the source pixel itself;
# 1 exact 2x, all weights 1024: (s00 + s01 + s10 + s11 + 2) >> 2, which is what cv2 computes there;
# 2 otherwise separable, like cv2.resize: each needed source row is resampled horizontally once
#   into an int32 row (cv2's HResizeLinear, weights sum to 2048), kept in a two-slot ring indexed by
#   ``r & 1`` (rows r0 and r1 = r0 + 1 differ in parity; r1 = r0 at the border), and every output
#   row blends two ring rows vertically with OpenCV's rounding (VResizeLinearVec_32s8u), so
#   consecutive output rows needing the same source row (downscales below 2x, every upscale)
#   reuse it. A row whose vertical weight 1 is 0 reads only r0 (the skipped term adds exactly 0).
#   The horizontal pass reads flat uint8 rows: pixel x, channel c of row r at ``src[r, xo + coff[c]]``
#   (xo: tap offsets from ``preprocess._htaps``; 3x faster than indexing (H, W, 3) there).
# YUV: modes 0 and 1 use every source pixel once, so they convert the sampled pixels straight
# (``_yuv_direct``); mode 2 converts each needed source row once into a packed BGR line (only the
# columns the taps read) and resamples that like a BGR row.
# Indices are cast to uintp (spares numba's negative-index wraparound); the vertical pass is
# spelled in int32 (numba would widen to int64: 1.7x slower). Serial on purpose: a prange twin
# (bench_preprocess.py --parallel) gained 1.3-1.8x on an idle 2-core machine but lost 3-25x
# whenever another process competed for a core (as inference does).
_I32 = np.int32


@inner
def _fill(o, padv, dy, x0, x1):
    for c in range(3):
        v = padv[c]
        for dx in range(x0, x1):
            o[c, dy, dx] = v


@inner
def _pad_row(o, padv, box, dy) -> bool:
    """Write the padding of output row ``dy``; True when the row also has image pixels."""
    if dy < box[0] or dy >= box[1]:
        _fill(o, padv, dy, 0, o.shape[2])
        return False
    _fill(o, padv, dy, 0, box[2])
    _fill(o, padv, dy, box[3], o.shape[2])
    return True


@inner
def _row_mode(xmode, b0, b1):
    """0: nearest, 1: 2x average, 2: separable bilinear, for one output row."""
    if xmode == 0 and b1 == 0:
        return 0
    return 1 if xmode == 1 and b0 == 1024 and b1 == 1024 else 2


@inner
def _direct(img, tx, mode, o, lut, dy, r0, r1, x0):
    """Modes 0 and 1 straight from the (H, W, 3) source into output row ``dy``."""
    dy, r0, r1, two, x0 = uintp(dy), uintp(r0), uintp(r1), uintp(2), uintp(x0)
    if mode == 0:
        for k in range(tx.shape[1]):
            xa = uintp(tx[0, k])
            for c in range(3):
                o[c, dy, x0 + uintp(k)] = lut[c, img[r0, xa, c]]
        return
    for k in range(tx.shape[1]):
        xa, xb = uintp(tx[0, k]), uintp(tx[1, k])
        for c in range(3):
            v = (uintp(img[r0, xa, c]) + uintp(img[r0, xb, c]) + uintp(img[r1, xa, c])
                 + uintp(img[r1, xb, c]) + two) >> two
            o[c, dy, x0 + uintp(k)] = lut[c, v]


@inner
def _hpass(row, xo, w, coff, h):
    """Horizontal pass of one source row into h (3, n), int32."""
    c0, c1, c2 = uintp(coff[0]), uintp(coff[1]), uintp(coff[2])
    for k in range(h.shape[1]):
        a, b, a0, a1 = uintp(xo[0, k]), uintp(xo[1, k]), w[0, k], w[1, k]
        h[0, k] = _I32(_I32(row[a + c0]) * a0) + _I32(_I32(row[b + c0]) * a1)
        h[1, k] = _I32(_I32(row[a + c1]) * a0) + _I32(_I32(row[b + c1]) * a1)
        h[2, k] = _I32(_I32(row[a + c2]) * a0) + _I32(_I32(row[b + c2]) * a1)


@inner
def _vpass(h0, h1, b0, b1, o, lut, dy, x0, v):
    """Vertical pass (always 0..255) into the uint8 row ``v``, then table -> output row ``dy``."""
    b0, b1, s4, s16, two = _I32(b0), _I32(b1), _I32(4), _I32(16), _I32(2)
    for c in range(3):
        p0, p1 = h0[c], h1[c]
        for k in range(v.shape[0]):
            q = _I32(_I32(_I32(p0[k] >> s4) * b0) >> s16) + _I32(_I32(_I32(p1[k] >> s4) * b1) >> s16)
            v[k] = np.uint8(_I32(q + two) >> two)
        oc, lc = o[c, dy, x0:], lut[c]
        for k in range(v.shape[0]):
            oc[k] = lc[v[k]]


@inner
def _work(n):
    """Ring of two horizontally resampled rows, their source row ids (-1: empty), a uint8 row."""
    return np.empty((2, 3, n), np.int32), np.full(2, -1, np.int64), np.empty(n, np.uint8)


@inner
def _slot(row, r, xo, w, coff, h, ids):
    """Slot of the ring ``h`` holding source row ``r`` (resampled from ``row`` when not yet there)."""
    s = r & 1
    if ids[s] != r:
        _hpass(row, xo, w, coff, h[s])
        ids[s] = r
    return s


@inner
def _bgr_rows(img, tx, src, xo, w, coff, xmode, o, lut, padv, ty, box, y0, y1):
    """Output rows y0..y1 of a 3-channel uint8 source (channel c -> o[c]) with its own ring.
    ``img`` (H, W, 3) and taps ``tx`` serve modes 0 and 1; its flat rows ``src`` mode 2."""
    h, ids, v = _work(xo.shape[1])
    for dy in range(y0, y1):
        if not _pad_row(o, padv, box, dy):
            continue
        ry = dy - box[0]
        r0, r1, b0, b1 = ty[0, ry], ty[1, ry], ty[2, ry], ty[3, ry]
        mode = _row_mode(xmode, b0, b1)
        if mode < 2:
            _direct(img, tx, mode, o, lut, dy, r0, r1, box[2])
            continue
        s0 = _slot(src[r0], r0, xo, w, coff, h, ids)
        s1 = s0 if b1 == 0 else _slot(src[r1], r1, xo, w, coff, h, ids)
        _vpass(h[s0], h[s1], b0, b1, o, lut, dy, box[2], v)


@jit
def bgr_kernel(img, tx, src, xo, w, coff, xmode, o, lut, padv, ty, box):
    """(H, W, 3) uint8 ``img`` (flat rows ``src``: pixel x, channel c at ``xo + coff[c]``) -> o[c, y, x]."""
    _bgr_rows(img, tx, src, xo, w, coff, xmode, o, lut, padv, ty, box, 0, o.shape[1])


# ``pack_kernel``: an image OpenCV already resampled (cv2.resize, SIMD) -> tensor. Measured faster than the
# one-pass kernels above whenever the source is packed 3-byte pixels (see ``preprocess.letterbox``): the
# one-pass kernels gather bytes and scale them one at a time; here each tensor row is one contiguous loop
# over a contiguous source row (LLVM vectorises it when ``o`` is C-contiguous: channel order is applied
# through ``coff``, not a reversed view). ``arith``: (v - a[c]) / b[c] in float32, used only when it equals
# the table for all 256 values (``preprocess._tables`` checks); else the table.
@inner
def _pack_row(rc, oc, lc, arith, ac, bc):
    if arith:
        for k in range(oc.shape[0]):
            oc[k] = (np.float32(rc[3 * k]) - ac) / bc
    else:
        for k in range(oc.shape[0]):
            oc[k] = lc[rc[3 * k]]


@jit
def pack_kernel(src, coff, o, lut, padv, box, top, left, arith, a, b):
    """(h, 3w) uint8 rows ``src`` (resampled image; channel ``coff[c]`` feeds tensor channel c) -> o[c, y, x];
    tensor row y, column x reads source row y - top, column x - left; outside ``box``: padding."""
    x0, x1 = box[2], box[3]
    for dy in range(o.shape[1]):
        if not _pad_row(o, padv, box, dy):
            continue
        row = src[uintp(dy - top)]
        start = uintp(3) * uintp(x0 - left)
        for c in range(3):
            _pack_row(row[start + uintp(coff[c]):], o[c, dy, x0:x1], lut[c], arith, a[c], b[c])


@inner
def _terms(u8, v8):
    """OpenCV's BT.601 chroma terms (b, g, r) of one U, V sample, rounding offset included."""
    u, v = np.int32(u8) - 128, np.int32(v8) - 128
    return 2116026 * u + 524288, -852492 * v - 409993 * u + 524288, 1673527 * v + 524288


@inner
def _chroma(up, vp, rc, xc):
    """Chroma terms of chroma sample (rc, xc) of U/V planes."""
    return _terms(up[rc, xc], vp[rc, xc])


@inner
def _bgr(y8, ch):
    """Luma ``y8`` + chroma terms -> (b, g, r) exactly as cv2.cvtColor(COLOR_YUV2BGR_*)."""
    y = max(np.int32(y8) - 16, 0) * 1220542
    return (min(max((y + ch[0]) >> 20, 0), 255), min(max((y + ch[1]) >> 20, 0), 255),
            min(max((y + ch[2]) >> 20, 0), 255))


@inner
def _px(yp, r, x, ch):
    """Pixel (r, x) of a Y plane -> (b, g, r); ``ch`` from _chroma."""
    return _bgr(yp[r, x], ch)


@inner
def _yuv_direct(yp, up, vp, cs, xo, mode, o, lut, dy, r0, r1, x0):
    """Modes 0 and 1 (each source pixel used once): convert the sampled pixels straight to row dy."""
    r0, r1, one = uintp(r0), uintp(r1), uintp(1)
    c0, c1 = r0 >> uintp(cs), r1 >> uintp(cs)
    for k in range(xo.shape[1]):
        xa, xb, dx = uintp(xo[0, k]), uintp(xo[1, k]), uintp(x0 + k)
        ch = _chroma(up, vp, c0, xa >> one)
        p = _px(yp, r0, xa, ch)
        if mode == 1:
            chb = ch if xb >> one == xa >> one else _chroma(up, vp, c0, xb >> one)
            p01 = _px(yp, r0, xb, chb)
            if c1 != c0:
                ch, chb = _chroma(up, vp, c1, xa >> one), _chroma(up, vp, c1, xb >> one)
            p10, p11 = _px(yp, r1, xa, ch), _px(yp, r1, xb, chb)
            p = ((p[0] + p01[0] + p10[0] + p11[0] + 2) >> 2, (p[1] + p01[1] + p10[1] + p11[1] + 2) >> 2,
                 (p[2] + p01[2] + p10[2] + p11[2] + 2) >> 2)
        o[0, dy, dx], o[1, dy, dx], o[2, dy, dx] = lut[0, uintp(p[0])], lut[1, uintp(p[1])], lut[2, uintp(p[2])]


@inner
def _yuv_line(yp, up, vp, cs, cols, r, lines, lids):
    """Source row ``r`` as a packed BGR line at ``cols`` (converted once, kept in slot ``r & 1``)."""
    line = lines[r & 1]
    if lids[r & 1] != r:
        lids[r & 1] = r
        rc, last, ch = uintp(r) >> uintp(cs), uintp(1) << uintp(62), _chroma(up, vp, 0, 0)
        for j in range(cols.shape[0]):
            x = uintp(cols[j])
            if x >> uintp(1) != last:  # a pixel pair shares its chroma
                last = x >> uintp(1)
                ch = _chroma(up, vp, rc, last)
            p, i = _px(yp, r, x, ch), x * uintp(3)
            line[i], line[i + uintp(1)], line[i + uintp(2)] = p[0], p[1], p[2]
    return line


@jit
def yuv_kernel(yp, up, vp, cs, cols, xo, w, xmode, o, lut, padv, ty, box):
    """Y plane (H, W), U/V planes at half width and ``H >> cs`` rows -> o[c, y, x] in B, G, R order.
    ``cs`` -1: ``yp`` is a YUYV frame as (H, 2W) bytes (``up``/``vp`` unused).
    ``xo``: tap columns; ``cols``: the source columns they read (the only ones converted)."""
    h, ids, v = _work(xo.shape[1])
    lines, lids = np.empty((2, yp.shape[1] * 3), np.uint8), np.full(2, -1, np.int64)
    packed = cs < 0
    xo3, coff = xo * 3, np.arange(3)  # offsets in a packed BGR line
    for dy in range(o.shape[1]):
        if not _pad_row(o, padv, box, dy):
            continue
        ry = dy - box[0]
        r0, r1, b0, b1 = ty[0, ry], ty[1, ry], ty[2, ry], ty[3, ry]
        mode = _row_mode(xmode, b0, b1)
        if mode < 2:
            if packed:
                _yuyv_direct(yp, xo, mode, o, lut, dy, r0, r1, box[2])
            else:
                _yuv_direct(yp, up, vp, cs, xo, mode, o, lut, dy, r0, r1, box[2])
            continue
        s0 = s1 = _slot(_line(yp, up, vp, cs, cols, r0, lines, lids), r0, xo3, w, coff, h, ids)
        if b1 != 0:
            s1 = _slot(_line(yp, up, vp, cs, cols, r1, lines, lids), r1, xo3, w, coff, h, ids)
        _vpass(h[s0], h[s1], b0, b1, o, lut, dy, box[2], v)


@inner
def _line(yp, up, vp, cs, cols, r, lines, lids):
    if cs < 0:
        return _yuyv_line(yp, cols, r, lines, lids)
    return _yuv_line(yp, up, vp, cs, cols, r, lines, lids)


# ``yuv_decimate_kernel``: YUV frames decimated by >= 2 per axis (every tensor pixel is one source pixel,
# e.g. 1080p -> 640), tensor rows in three passes over short arrays: gather the sampled Y, U, V bytes of
# the row, BT.601 over the row (``_terms``/``_bgr``; scalar: numba widens the int32 arithmetic to int64 and
# LLVM does not vectorise it), normalise into the three C-contiguous channel rows (vectorises; ``swap``
# writes R first). 1080p -> 640 hot: 0.20 ms gather, 0.15 ms BT.601, 0.07 ms normalise
# (benchmarks/README.md); the one-pass ``yuv_kernel`` took twice as long through a reversed view and tables.
@inner
def _gather_yuv(yp, up, vp, cs, cols, r, yv, uv, vv):
    rr, rc, one = uintp(r), uintp(r) >> uintp(cs) if cs >= 0 else uintp(r), uintp(1)
    for k in range(cols.shape[0]):
        x = uintp(cols[k])
        if cs < 0:  # YUYV: one (H, 2W) byte array, luma at 2x, the pair's U, V at 4(x >> 1) + 1, + 3
            i = (x >> one) << uintp(2)
            yv[k], uv[k], vv[k] = yp[rr, x << one], yp[rr, i + one], yp[rr, i + uintp(3)]
        else:
            yv[k], uv[k], vv[k] = yp[rr, x], up[rc, x >> one], vp[rc, x >> one]


@inner
def _convert_row(yv, uv, vv, b8, g8, r8):
    """cv2.cvtColor's BT.601 integer formula (``_terms``/``_bgr``) over whole rows."""
    for k in range(yv.shape[0]):
        b8[k], g8[k], r8[k] = _bgr(yv[k], _terms(uv[k], vv[k]))


@inner
def _norm_row(src, oc, lc, arith, ac, bc):
    if arith:
        for k in range(oc.shape[0]):
            oc[k] = (np.float32(src[k]) - ac) / bc
    else:
        for k in range(oc.shape[0]):
            oc[k] = lc[src[k]]


@jit
def yuv_decimate_kernel(yp, up, vp, cs, cols, o, lut, padv, ty, box, swap, arith, a, b):
    """Sampled source pixels (rows ``ty[0]``, columns ``cols``) of a YUV frame -> o[c, y, x] (tensor
    channel order: R first when ``swap``, else B); ``lut``/``a``/``b`` in tensor channel order."""
    n = cols.shape[0]
    yv, uv, vv = np.empty(n, np.uint8), np.empty(n, np.uint8), np.empty(n, np.uint8)
    bgr = np.empty((3, n), np.int32)
    x0 = box[2]
    for dy in range(o.shape[1]):
        if not _pad_row(o, padv, box, dy):
            continue
        _gather_yuv(yp, up, vp, cs, cols, ty[0, dy - box[0]], yv, uv, vv)
        _convert_row(yv, uv, vv, bgr[0], bgr[1], bgr[2])
        for c in range(3):
            _norm_row(bgr[2 - c] if swap else bgr[c], o[c, dy, x0:x0 + n], lut[c], arith, a[c], b[c])


# YUYV (Y0 U Y1 V per pixel pair; ``yuv_kernel`` with cs -1) reads the frame as one (H, 2W) byte
# array: pixel x of row r has its luma at byte 2x and its pair's U, V at 4(x >> 1) + 1 and + 3 (was:
# three strided (H, W) plane views, which numba indexes through both strides). 1080p -> 640 kernel
# alone, old vs new interleaved on the loaded 2-core EPYC: 1.01x and 1.16x (benchmarks/README.md).
@inner
def _yuyv_terms(img, r, x):
    i = (x >> uintp(1)) << uintp(2)
    return _terms(img[r, i + uintp(1)], img[r, i + uintp(3)])


@inner
def _yuyv_direct(img, xo, mode, o, lut, dy, r0, r1, x0):
    """Modes 0 and 1 of a YUYV frame (chroma on every row): the sampled pixels straight to row dy."""
    r0, r1, one = uintp(r0), uintp(r1), uintp(1)
    for k in range(xo.shape[1]):
        xa, xb, dx = uintp(xo[0, k]), uintp(xo[1, k]), uintp(x0 + k)
        ch = _yuyv_terms(img, r0, xa)
        p = _bgr(img[r0, xa << one], ch)
        if mode == 1:
            chb = ch if xb >> one == xa >> one else _yuyv_terms(img, r0, xb)
            p01 = _bgr(img[r0, xb << one], chb)
            if r1 != r0:
                ch, chb = _yuyv_terms(img, r1, xa), _yuyv_terms(img, r1, xb)
            p10, p11 = _bgr(img[r1, xa << one], ch), _bgr(img[r1, xb << one], chb)
            p = ((p[0] + p01[0] + p10[0] + p11[0] + 2) >> 2, (p[1] + p01[1] + p10[1] + p11[1] + 2) >> 2,
                 (p[2] + p01[2] + p10[2] + p11[2] + 2) >> 2)
        o[0, dy, dx], o[1, dy, dx], o[2, dy, dx] = lut[0, uintp(p[0])], lut[1, uintp(p[1])], lut[2, uintp(p[2])]


@inner
def _yuyv_line(img, cols, r, lines, lids):
    """YUYV row ``r`` as a packed BGR line at ``cols`` (converted once, kept in slot ``r & 1``)."""
    line = lines[r & 1]
    if lids[r & 1] != r:
        lids[r & 1] = r
        ru, last, ch = uintp(r), uintp(1) << uintp(62), _terms(128, 128)
        for j in range(cols.shape[0]):
            x = uintp(cols[j])
            if x >> uintp(1) != last:  # a pixel pair shares its chroma
                last = x >> uintp(1)
                ch = _yuyv_terms(img, ru, x)
            p, i = _bgr(img[ru, x << uintp(1)], ch), x * uintp(3)
            line[i], line[i + uintp(1)], line[i + uintp(2)] = p[0], p[1], p[2]
    return line
