"""Camera frame -> model tensor in one pass: resize, pad/crop, colour-convert, normalise, lay out.

``plan`` computes the geometry (Ultralytics ``LetterBox``/``scale_boxes`` arithmetic, torchvision's
resize-short + centre-crop); ``letterbox`` samples the source straight into the tensor.

Resampling reproduces ``cv2.resize(..., INTER_LINEAR)`` on uint8 bit for bit: half-pixel centres,
border clamp, 11-bit fixed-point weights and OpenCV's SIMD rounding of the vertical pass. YUV frames
are converted per sampled pixel with OpenCV's BT.601 integer formula (``cv2.cvtColor``), so the tensor
equals OpenCV's chain without ever building an intermediate BGR image. The normalisation
``(x*scale - mean)/std`` is a 256-entry table per channel; float16 tables hold the bits of the
float32 table cast to float16, so float16 output is exactly the float32 output cast.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numba import uintp

from . import _check
from ._jit import inner, jit
from .errors import EdgerunTypeError, EdgerunValueError

__all__ = ["Geometry", "plan", "letterbox", "PIXEL_FORMATS"]

PIXEL_FORMATS = ("bgr", "rgb", "gray", "nv12", "nv21", "i420", "yuyv")
_MODES = ("letterbox", "rect", "stretch", "center_crop")


@dataclass(frozen=True)
class Geometry:
    """How a tensor relates to its source image. Map back: ``x_src = (x_t - pad_x) / scale_x``."""

    src_h: int
    src_w: int
    dst_h: int
    dst_w: int
    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    new_h: int  # size the source is resampled to
    new_w: int
    top: int  # tensor row/column of the resampled image's origin (negative when centre-cropped)
    left: int


# ----------------------------------------------------------------------------------- geometry
def _size(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (size, size)
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise EdgerunValueError(f"size: expected an int or (height, width), got {size!r}")
    return _check.positive_int("size[0]", size[0]), _check.positive_int("size[1]", size[1])


def _choice(name: str, value, choices) -> str:
    if value not in choices:
        raise EdgerunValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _plan_letterbox(sh: int, sw: int, h: int, w: int, rect: bool, stride: int, center: bool) -> Geometry:
    r = min(h / sh, w / sw)
    nw, nh = max(1, int(round(sw * r))), max(1, int(round(sh * r)))  # >= 1: extreme aspect ratios
    dw, dh = w - nw, h - nh
    if rect:
        dw, dh = dw % stride, dh % stride
    dst_w, dst_h = nw + dw, nh + dh
    gain = min(dst_h / sh, dst_w / sw)
    if not center:
        return Geometry(sh, sw, dst_h, dst_w, gain, gain, 0.0, 0.0, nh, nw, 0, 0)
    left, top = int(round(dw / 2 - 0.1)), int(round(dh / 2 - 0.1))  # Ultralytics LetterBox
    pad_x = round((dst_w - sw * gain) / 2 - 0.1)  # Ultralytics scale_boxes
    pad_y = round((dst_h - sh * gain) / 2 - 0.1)
    return Geometry(sh, sw, dst_h, dst_w, gain, gain, float(pad_x), float(pad_y), nh, nw, top, left)


def _crop_offset(new: int, dst: int) -> int:
    return -int(round((new - dst) / 2.0)) if new >= dst else (dst - new) // 2  # torchvision


def _plan_crop(sh: int, sw: int, h: int, w: int, short: int) -> Geometry:
    if sw <= sh:
        nw, nh = short, max(1, int(short * sh / sw))  # torchvision Resize(int)
    else:
        nw, nh = max(1, int(short * sw / sh)), short
    top, left = _crop_offset(nh, h), _crop_offset(nw, w)
    return Geometry(sh, sw, h, w, nw / sw, nh / sh, float(left), float(top), nh, nw, top, left)


def plan(src_h: int, src_w: int, size=(640, 640), *, mode: str = "letterbox", stride: int = 32,
         pad_position: str = "center", resize_short: int | None = None) -> Geometry:
    """Geometry of ``letterbox`` for a ``src_h x src_w`` image; ``size`` is ``(height, width)`` or int.

    letterbox/rect follow Ultralytics exactly (rect pads only to the next multiple of ``stride``);
    ``pad_position="top_left"`` puts the image at the origin (YOLOX, YuNet); stretch ignores aspect;
    center_crop resizes the short side to ``resize_short`` (default ``min(size)``) and crops the centre.
    """
    sh, sw = _check.positive_int("src_h", src_h), _check.positive_int("src_w", src_w)
    h, w = _size(size)
    _choice("mode", mode, _MODES)
    center = _choice("pad_position", pad_position, ("center", "top_left")) == "center"
    if mode == "stretch":
        return Geometry(sh, sw, h, w, w / sw, h / sh, 0.0, 0.0, h, w, 0, 0)
    if mode == "center_crop":
        short = min(h, w) if resize_short is None else _check.positive_int("resize_short", resize_short)
        return _plan_crop(sh, sw, h, w, short)
    if resize_short is not None:
        raise EdgerunValueError(f"resize_short: only used with mode='center_crop', got mode={mode!r}")
    stride = _check.positive_int("stride", stride)
    return _plan_letterbox(sh, sw, h, w, mode == "rect", stride, center)


# ------------------------------------------------------------------------- tables (cached)
@functools.lru_cache(maxsize=64)
def _taps(src: int, new: int, start: int, count: int, clamp: bool) -> tuple[np.ndarray, int]:
    """(4, count) int32 rows i0, i1, w0, w1 for resampled positions start..start+count (cv2 rules),
    and the mode: 0 when every w1 is 0 (single tap), 1 when all weights are 1024 (2x), else 2."""
    d = np.arange(start, start + count, dtype=np.float64)
    f = ((d + 0.5) * (1.0 / (new / src)) - 0.5).astype(np.float32)
    i = np.floor(f)
    f = (f - i).astype(np.float32)
    i = i.astype(np.int64)
    if clamp:  # horizontal: OpenCV moves out-of-range taps onto the edge with weight 0
        f[i < 0] = 0
        f[i >= src - 1] = 0
    w0 = np.rint((np.float32(1) - f) * np.float32(2048))
    w1 = np.rint(f * np.float32(2048))
    # w0 + w1 is 2048, or 2049 at float32 near-ties; either way _blend stays within 0..255
    if w0.min(initial=0) < 0 or (w0 + w1).max(initial=0) > 2049:
        raise AssertionError("preprocess: resampling weights out of range")  # pragma: no cover
    t = np.stack([np.clip(i, 0, src - 1), np.clip(i + 1, 0, src - 1), w0, w1]).astype(np.int32)
    t.flags.writeable = False
    return t, (0 if not w1.any() else 1 if (w0 == 1024).all() and (w1 == 1024).all() else 2)


@functools.lru_cache(maxsize=32)
def _tables(scale: float, mean: tuple, std: tuple, pad: float, f16: bool):
    """Per channel (of ``mean``/``std``): value table (3, 256) and pad values (3,), float32 or
    float16 bits (the float32 values cast, so float16 output == float32 output cast)."""
    m, s = np.array(mean)[:, None], np.array(std)[:, None]
    lut = ((np.arange(256.0)[None, :] * scale - m) / s).astype(np.float32)
    padv = ((pad * scale - m[:, 0]) / s[:, 0]).astype(np.float32)
    if f16:
        lut, padv = lut.astype(np.float16).view(np.uint16), padv.astype(np.float16).view(np.uint16)
    lut.flags.writeable = padv.flags.writeable = False
    return lut, padv


# --------------------------------------------------------------------------------- kernels
# tx/ty rows: tap 0, tap 1, weight 0, weight 1 (see _taps). Indices are cast to uintp, which spares
# numba's negative-index wraparound (~25% faster). Exact shortcuts of OpenCV's arithmetic:
# weight 1 == 0 implies weight 0 == 2048 and the skipped tap adds exactly 0; both axes so -> the
# source pixel itself (integer downscale, e.g. 1080p -> 640); both axes 1024/1024 (exact 2x) ->
# (s00 + s01 + s10 + s11 + 2) >> 2, which is also what cv2 computes there (INTER_AREA fast path).
# Serial on purpose: a prange twin (benchmarks/bench_preprocess.py --parallel) gained 1.3-1.8x on an
# idle 2-core machine but lost 3-25x whenever another process competed for a core (as inference does).
@inner
def _blend(h0, h1, b0, b1):
    """OpenCV's vertical fixed-point pass (VResizeLinearVec_32s8u); always within 0..255."""
    return uintp(((((h0 >> 4) * b0) >> 16) + (((h1 >> 4) * b1) >> 16) + 2) >> 2)


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
    """0: nearest, 1: 2x average, 2: general bilinear, for one output row."""
    if xmode == 0 and b1 == 0:
        return 0
    return 1 if xmode == 1 and b0 == 1024 and b1 == 1024 else 2


@inner
def _bgr_row(img, o, lut, tx, xmode, dy, r0, r1, b0, b1, x0, x1):
    mode, xone, yone = _row_mode(xmode, b0, b1), xmode == 0, b1 == 0
    dy, r0, r1 = uintp(dy), uintp(r0), uintp(r1)
    for dx in range(uintp(x0), uintp(x1)):
        k = dx - uintp(x0)
        xa, xb, a0, a1 = uintp(tx[0, k]), uintp(tx[1, k]), tx[2, k], tx[3, k]
        for c in range(3):
            if mode == 0:
                v = uintp(img[r0, xa, c])
            elif mode == 1:
                v = (uintp(img[r0, xa, c]) + uintp(img[r0, xb, c]) + uintp(img[r1, xa, c])
                     + uintp(img[r1, xb, c]) + uintp(2)) >> uintp(2)
            else:
                h0 = np.int32(img[r0, xa, c]) * a0
                h1 = np.int32(0)
                if not xone:
                    h0 += np.int32(img[r0, xb, c]) * a1
                if not yone:
                    h1 = np.int32(img[r1, xa, c]) * a0
                    if not xone:
                        h1 += np.int32(img[r1, xb, c]) * a1
                v = _blend(h0, h1, b0, b1)
            o[c, dy, dx] = lut[c, v]


@jit
def _bgr_kernel(img, o, lut, padv, tx, xmode, ty, box):
    """3-channel uint8 source (any strides) -> o[c, y, x] (channel c = source channel c)."""
    for dy in range(o.shape[1]):
        if _pad_row(o, padv, box, dy):
            ry = dy - box[0]
            _bgr_row(img, o, lut, tx, xmode, dy, ty[0, ry], ty[1, ry], ty[2, ry], ty[3, ry], box[2], box[3])


@inner
def _chroma(up, vp, rc, xc):
    """OpenCV's BT.601 chroma terms (b, g, r) of chroma sample (rc, xc), rounding offset included."""
    u, v = np.int32(up[rc, xc]) - 128, np.int32(vp[rc, xc]) - 128
    return 2116026 * u + 524288, -852492 * v - 409993 * u + 524288, 1673527 * v + 524288


@inner
def _px(yp, r, x, ch):
    """Pixel (r, x) -> (b, g, r) exactly as cv2.cvtColor(COLOR_YUV2BGR_*); ``ch`` from _chroma."""
    y = max(np.int32(yp[r, x]) - 16, 0) * 1220542
    return (min(max((y + ch[0]) >> 20, 0), 255), min(max((y + ch[1]) >> 20, 0), 255),
            min(max((y + ch[2]) >> 20, 0), 255))


@inner
def _yuv_row(yp, up, vp, cs, o, lut, tx, xmode, dy, r0, r1, b0, b1, x0, x1):
    mode, xone, yone = _row_mode(xmode, b0, b1), xmode == 0, b1 == 0
    dy, r0, r1 = uintp(dy), uintp(r0), uintp(r1)
    c0, c1, one = r0 >> uintp(cs), r1 >> uintp(cs), uintp(1)
    for dx in range(uintp(x0), uintp(x1)):
        k = dx - uintp(x0)
        xa, xb, a0, a1 = uintp(tx[0, k]), uintp(tx[1, k]), tx[2, k], tx[3, k]
        ua, ub = xa >> one, xb >> one
        ch = _chroma(up, vp, c0, ua)
        p00 = _px(yp, r0, xa, ch)
        if mode == 0:
            for c in range(3):
                o[c, dy, dx] = lut[c, uintp(p00[c])]
            continue
        chb = ch if ub == ua else _chroma(up, vp, c0, ub)
        p01 = p00 if xone else _px(yp, r0, xb, chb)
        if not yone and c1 != c0:
            ch, chb = _chroma(up, vp, c1, ua), _chroma(up, vp, c1, ub)
        p10 = p00 if yone else _px(yp, r1, xa, ch)
        p11 = p10 if xone else (p01 if yone else _px(yp, r1, xb, chb))
        for c in range(3):
            if mode == 1:
                v = uintp((p00[c] + p01[c] + p10[c] + p11[c] + 2) >> 2)
            else:
                v = _blend(p00[c] * a0 + p01[c] * a1, p10[c] * a0 + p11[c] * a1, b0, b1)
            o[c, dy, dx] = lut[c, v]


@jit
def _yuv_kernel(yp, up, vp, cs, o, lut, padv, tx, xmode, ty, box):
    """Y plane (H, W), U/V planes at half width and ``H >> cs`` rows -> o[c, y, x] in B, G, R order."""
    for dy in range(o.shape[1]):
        if _pad_row(o, padv, box, dy):
            ry = dy - box[0]
            _yuv_row(yp, up, vp, cs, o, lut, tx, xmode, dy, ty[0, ry], ty[1, ry], ty[2, ry], ty[3, ry],
                     box[2], box[3])


# ------------------------------------------------------------------------------- wrappers
def _even(name: str, h: int, w: int, fmt: str, need_h: bool) -> None:
    if w % 2 or (need_h and h % 2):
        raise EdgerunValueError(f"{name}: pixel_format {fmt!r} needs an even width"
                                f"{' and height' if need_h else ''}, got {h}x{w} (crop or pad by one)")


def _planes_420(image: np.ndarray, fmt: str):
    if image.ndim != 2 or image.shape[0] % 3:
        raise EdgerunValueError(f"image: pixel_format {fmt!r} expects OpenCV's (H*3//2, W) uint8 "
                                f"buffer with even H and W, got shape {image.shape}")
    h, w = image.shape[0] * 2 // 3, image.shape[1]
    _even("image", h, w, fmt, True)
    if fmt == "i420":  # planes only exist in the flat buffer: a strided view is copied once
        flat = np.ascontiguousarray(image).reshape(-1)
        q = (h // 2) * (w // 2)
        u = flat[h * w:h * w + q].reshape(h // 2, w // 2)
        return image[:h], u, flat[h * w + q:].reshape(h // 2, w // 2), 1, h, w
    uv = image[h:]
    u, v = (uv[:, 0::2], uv[:, 1::2]) if fmt == "nv12" else (uv[:, 1::2], uv[:, 0::2])
    return image[:h], u, v, 1, h, w


def _source(image, fmt: str):
    """Validate ``image`` for ``fmt``; return (kernel planes, height, width)."""
    image = _check.array("image", image, np.uint8)
    if image.size == 0:
        raise EdgerunValueError(f"image: empty image, shape {image.shape}")
    if fmt in ("bgr", "rgb"):
        if image.ndim != 3 or image.shape[2] != 3:
            raise EdgerunValueError(f"image: pixel_format {fmt!r} expects (H, W, 3) uint8, got shape "
                                    f"{image.shape}")
        return (image,), image.shape[0], image.shape[1]
    if fmt == "gray":
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1)):
            raise EdgerunValueError(f"image: pixel_format 'gray' expects (H, W) or (H, W, 1) uint8, got "
                                    f"shape {image.shape}")
        g = image.reshape(image.shape[:2]) if image.ndim == 3 else image
        view = np.lib.stride_tricks.as_strided(g, g.shape + (3,), g.strides + (0,), writeable=False)
        return (view,), g.shape[0], g.shape[1]
    if fmt == "yuyv":
        if image.ndim != 3 or image.shape[2] != 2:
            raise EdgerunValueError(f"image: pixel_format 'yuyv' expects OpenCV's (H, W, 2) uint8, got "
                                    f"shape {image.shape}")
        _even("image", image.shape[0], image.shape[1], fmt, False)
        return (image[:, :, 0], image[:, 0::2, 1], image[:, 1::2, 1], 0), image.shape[0], image.shape[1]
    y, u, v, cs, h, w = _planes_420(image, fmt)
    return (y, u, v, cs), h, w


def _norm(scale, mean, std, pad_value) -> tuple:
    scale = _check.finite_float("scale", scale)
    triples = []
    for name, val in (("mean", mean), ("std", std)):
        vals = (val,) * 3 if np.ndim(val) == 0 else tuple(np.ravel(val))
        if len(vals) != 3:
            raise EdgerunValueError(f"{name}: expected a number or 3 values, got {val!r}")
        triples.append(tuple(_check.finite_float(f"{name}[{i}]", x) for i, x in enumerate(vals)))
    if 0.0 in triples[1]:
        raise EdgerunValueError(f"std: expected non-zero values, got {std!r}")
    return scale, triples[0], triples[1], _check.finite_float("pad_value", pad_value, 0.0, 255.0)


def _dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise EdgerunTypeError(f"dtype: expected float32 or float16, got {dtype!r}")
    return dt


@functools.lru_cache(maxsize=64)
def _box(g: Geometry) -> np.ndarray:
    """Tensor rows/columns covered by the image: y0, y1, x0, x1 (empty when fully cropped)."""
    y0, x0 = max(0, g.top), max(0, g.left)
    y1, x1 = min(g.dst_h, g.top + g.new_h), min(g.dst_w, g.left + g.new_w)
    box = np.array([y0, max(y0, y1), x0, max(x0, x1)], np.int64)
    box.flags.writeable = False
    return box


def letterbox(image: np.ndarray, size=(640, 640), *, pixel_format: str = "bgr", mode: str = "letterbox",
              stride: int = 32, pad_value: float = 114, pad_position: str = "center",
              channel_order: str = "rgb", scale: float = 1 / 255, mean=(0.0, 0.0, 0.0),
              std=(1.0, 1.0, 1.0), layout: str = "chw", dtype=np.float32, out: np.ndarray | None = None,
              resize_short: int | None = None) -> tuple[np.ndarray, Geometry]:
    """Resize (cv2 INTER_LINEAR), pad/crop, convert and normalise ``image`` into a model tensor.

    Returns ``(tensor, geometry)``: tensor ``(3, H, W)`` for layout "chw" or ``(H, W, 3)`` for "hwc",
    written into ``out`` when given (no batch dim: pass ``out=batch[i]``). ``mean``/``std`` are in
    tensor channel order. See ``plan`` for mode/stride/pad_position/resize_short.
    """
    fmt = _choice("pixel_format", pixel_format, PIXEL_FORMATS)
    planes, h, w = _source(image, fmt)
    geo = plan(h, w, size, mode=mode, stride=stride, pad_position=pad_position, resize_short=resize_short)
    swap = _choice("channel_order", channel_order, ("rgb", "bgr")) != ("rgb" if fmt == "rgb" else "bgr")
    chw = _choice("layout", layout, ("chw", "hwc")) == "chw"
    dt = _dtype(dtype)
    scale, mean, std, pad = _norm(scale, mean, std, pad_value)
    shape = (3, geo.dst_h, geo.dst_w) if chw else (geo.dst_h, geo.dst_w, 3)
    out = _check.out_buffer("out", out, shape, dt)
    # kernels write source channel k to o[k] through table k: reverse the view and the tables
    # when the tensor wants the other channel order
    lut, padv = _tables(scale, mean[::-1] if swap else mean, std[::-1] if swap else std, pad,
                        dt == np.float16)
    o = out.view(np.uint16) if dt == np.float16 else out
    o = o if chw else o.transpose(2, 0, 1)
    o = o[::-1] if swap else o
    box = _box(geo)
    ty, _ = _taps(h, geo.new_h, int(box[0]) - geo.top, int(box[1] - box[0]), False)
    tx, xmode = _taps(w, geo.new_w, int(box[2]) - geo.left, int(box[3] - box[2]), True)
    if len(planes) == 1:
        _bgr_kernel(planes[0], o, lut, padv, tx, xmode, ty, box)
    else:
        _yuv_kernel(*planes, o, lut, padv, tx, xmode, ty, box)
    return out, geo
