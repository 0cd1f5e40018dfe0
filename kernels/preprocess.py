"""Camera frame -> model tensor in one pass: resize, pad/crop, colour-convert, normalise, lay out.

``plan`` computes the geometry (Ultralytics ``LetterBox``/``scale_boxes`` arithmetic, torchvision's
resize-short + centre-crop); ``letterbox`` samples the source straight into the tensor.

The tensor equals OpenCV's chain (``cv2.cvtColor`` for YUV, ``cv2.resize(..., INTER_LINEAR)``, pad,
channel order, ``/255``-style normalisation) bit for bit, by one of two paths chosen per frame by
measurement (``_pack_source``): OpenCV itself converts/resamples into a reused per-thread buffer and
``camera.pack_kernel`` pads, normalises and lays out (packed BGR/RGB frames, contiguous YUV frames); or
the one-pass kernels of ``camera.py`` sample the source straight into the tensor, reproducing OpenCV's
resize (half-pixel centres, border clamp, 11-bit fixed-point weights, its SIMD rounding) and BT.601
integer conversion without an intermediate image (YUV decimated by >= 2x per axis, e.g. 1080p -> 640;
gray, 4-byte pixels, strided/flipped views, padded picamera2 buffers). This module plans, validates and
builds the tables. The normalisation
``(x*scale - mean)/std`` is a 256-entry table per channel; float16 tables hold the bits of the
float32 table cast to float16, so float16 output is exactly the float32 output cast.
"""
from __future__ import annotations

import functools
import hashlib
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from . import checks
from .camera import bgr_kernel, pack_kernel, yuv_decimate_kernel, yuv_kernel
from .errors import EdgerunTypeError, EdgerunValueError

__all__ = ["Geometry", "plan", "letterbox", "PIXEL_FORMATS", "PICAMERA_FORMATS"]

# picamera2 (libcamera) buffer names -> the edgerun format with the same channel order. RGB888 is
# B, G, R in memory (H, W, 3); XRGB8888 is B, G, R, X (H, W, 4); YUV420 is I420 as picamera2 hands
# it over: (H*3//2, stride), Y rows ``stride`` bytes apart, then the U and V planes with rows
# ``stride // 2`` apart (pass ``array[:, :width]`` to drop the row padding). BGR888/XBGR8888/YVU420
# are the same with R/B (U/V) swapped.
PICAMERA_FORMATS = {"RGB888": "bgr", "BGR888": "rgb", "XRGB8888": "bgr", "XBGR8888": "rgb",
                    "YUV420": "bgr", "YVU420": "bgr"}
PIXEL_FORMATS = ("bgr", "rgb", "gray", "nv12", "nv21", "i420", "yuyv") + tuple(PICAMERA_FORMATS)
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
    return checks.positive_int("size[0]", size[0]), checks.positive_int("size[1]", size[1])


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
    if not center:  # YOLOX / YuNet map back with the single ratio
        return Geometry(sh, sw, dst_h, dst_w, gain, gain, 0.0, 0.0, nh, nw, 0, 0)
    left, top = int(round(dw / 2 - 0.1)), int(round(dh / 2 - 0.1))  # Ultralytics LetterBox
    # Ultralytics 8.4 scale_boxes, recomputed from the tensor size as it does: the padding of the rounded
    # resize and per-axis gains of the rounded resized size (in letterbox mode those are nw, nh, left, top)
    bw, bh = max(1, round(sw * gain)), max(1, round(sh * gain))
    pad_x, pad_y = round((dst_w - bw) / 2 - 0.1), round((dst_h - bh) / 2 - 0.1)
    return Geometry(sh, sw, dst_h, dst_w, bw / sw, bh / sh, float(pad_x), float(pad_y), nh, nw, top, left)


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
    sh, sw = checks.positive_int("src_h", src_h), checks.positive_int("src_w", src_w)
    h, w = _size(size)
    _choice("mode", mode, _MODES)
    center = _choice("pad_position", pad_position, ("center", "top_left")) == "center"
    if mode == "stretch":
        return Geometry(sh, sw, h, w, w / sw, h / sh, 0.0, 0.0, h, w, 0, 0)
    if mode == "center_crop":
        short = min(h, w) if resize_short is None else checks.positive_int("resize_short", resize_short)
        return _plan_crop(sh, sw, h, w, short)
    if resize_short is not None:
        raise EdgerunValueError(f"resize_short: only used with mode='center_crop', got mode={mode!r}")
    stride = checks.positive_int("stride", stride)
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
    # w0 + w1 is 2048, or 2049 at float32 near-ties; either way camera._vpass stays within 0..255
    if w0.min(initial=0) < 0 or (w0 + w1).max(initial=0) > 2049:
        raise AssertionError("preprocess: resampling weights out of range")  # pragma: no cover
    t = np.stack([np.clip(i, 0, src - 1), np.clip(i + 1, 0, src - 1), w0, w1]).astype(np.int32)
    t.flags.writeable = False
    return t, (0 if not w1.any() else 1 if (w0 == 1024).all() and (w1 == 1024).all() else 2)


@functools.lru_cache(maxsize=64)
def _htaps(src: int, new: int, start: int, count: int, sx: int, flip: bool):
    """Horizontal taps as flat row offsets for pixels ``sx`` bytes apart (reversed: x -> src-1-x):
    offsets (2, count) intp, weights (2, count) int32, the mode (``_taps``) and the sorted source
    columns the taps read (int32; YUV converts only those)."""
    t, mode = _taps(src, new, start, count, True)
    cols = np.unique(np.concatenate([t[0], t[1][t[3] != 0]])).astype(np.int32)
    xo = ((src - 1 - t[:2]) if flip else t[:2]).astype(np.intp) * sx
    w = np.ascontiguousarray(t[2:])
    for a in (xo, w, cols):
        a.flags.writeable = False
    return xo, w, mode, cols


@functools.lru_cache(maxsize=32)
def _tables(scale: float, mean: tuple, std: tuple, pad: float, f16: bool):
    """Per channel (of ``mean``/``std``): value table (3, 256) and pad values (3,), float32 or
    float16 bits (the float32 values cast, so float16 output == float32 output cast); then ``arith``,
    ``a``, ``b``: True when float32 (v - a) / b equals the float32 table for every v (e.g. /255), which
    ``pack_kernel`` then computes instead of looking up (it vectorises)."""
    m, s = np.array(mean)[:, None], np.array(std)[:, None]
    lut = ((np.arange(256.0)[None, :] * scale - m) / s).astype(np.float32)
    padv = ((pad * scale - m[:, 0]) / s[:, 0]).astype(np.float32)
    a, b = (m[:, 0] / scale).astype(np.float32), (s[:, 0] / scale).astype(np.float32)
    with np.errstate(all="ignore"):
        arith = not f16 and bool(np.all((np.arange(256, dtype=np.float32)[None, :] - a[:, None]) / b[:, None] == lut))
    if f16:
        lut, padv = lut.astype(np.float16).view(np.uint16), padv.astype(np.float16).view(np.uint16)
    for t in (lut, padv, a, b):
        t.flags.writeable = False
    return lut, padv, arith, a, b


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


def _memory_after(a: np.ndarray) -> int:
    """Bytes of the owning buffer from ``a``'s first element on (for strided plane views)."""
    root = a
    while True:
        base = root.base
        base = base if isinstance(base, np.ndarray) else getattr(base, "base", None)  # as_strided's wrapper
        if not isinstance(base, np.ndarray):
            break
        root = base
    lo = hi = root.__array_interface__["data"][0]
    for n, st in zip(root.shape, root.strides):
        lo, hi = (lo + (n - 1) * st, hi) if st < 0 else (lo, hi + (n - 1) * st)
    return hi + root.itemsize - a.__array_interface__["data"][0]


def _picamera_420(image: np.ndarray, fmt: str):
    """picamera2's YUV420/YVU420 (H*3//2, S) buffer, or a ``[:, :W]`` view of it: planes at the
    buffer's row stride S (chroma rows S // 2 apart), picture W = ``image.shape[1]`` wide."""
    if image.ndim != 2 or image.shape[0] % 3 or image.strides[1] != 1:
        raise EdgerunValueError(f"image: pixel_format {fmt!r} expects picamera2's (H*3//2, stride) uint8 "
                                f"buffer (or a [:, :width] view of it), got shape {image.shape}, "
                                f"strides {image.strides}")
    h, w, s = image.shape[0] * 2 // 3, image.shape[1], image.strides[0]
    _even("image", h, w, fmt, True)
    if s % 2 or s < w:
        raise EdgerunValueError(f"image: pixel_format {fmt!r} needs an even row stride >= the width "
                                f"{w}, got a stride of {s} bytes")
    need = h * s + h * s // 2 - s // 2 + w // 2  # the V plane's last row ends here
    if _memory_after(image) < need:
        raise EdgerunValueError(f"image: pixel_format {fmt!r}: a {w}x{h} picture with row stride {s} "
                                f"needs {need} bytes, the buffer holds {_memory_after(image)}")
    flat = np.lib.stride_tricks.as_strided(image, (need,), (1,))
    q = (h // 2) * (s // 2)
    u = np.lib.stride_tricks.as_strided(flat[h * s:], (h // 2, w // 2), (s // 2, 1))
    v = np.lib.stride_tricks.as_strided(flat[h * s + q:], (h // 2, w // 2), (s // 2, 1))
    return image[:h], (v if fmt == "YVU420" else u), (u if fmt == "YVU420" else v), 1, h, w


def _source(image, fmt: str):
    """Validate ``image`` for ``fmt``; return (kernel planes, height, width)."""
    image = checks.array("image", image, np.uint8)
    if image.size == 0:
        raise EdgerunValueError(f"image: empty image, shape {image.shape}")
    if fmt in ("XRGB8888", "XBGR8888"):  # the X byte is skipped through the view's pixel stride
        if image.ndim != 3 or image.shape[2] != 4:
            raise EdgerunValueError(f"image: pixel_format {fmt!r} expects (H, W, 4) uint8, got shape "
                                    f"{image.shape}")
        return (image[:, :, :3],), image.shape[0], image.shape[1]
    if fmt in ("YUV420", "YVU420"):
        y, u, v, cs, h, w = _picamera_420(image, fmt)
        return (y, u, v, cs), h, w
    if fmt in ("bgr", "rgb", "RGB888", "BGR888"):  # packed 3-byte pixels, any strides (row padding)
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
        # one (H, 2W) byte array (a view of a C-contiguous frame; others are copied once), cs -1 = packed
        flat = np.ascontiguousarray(image).reshape(image.shape[0], -1)
        return (flat, flat, flat, -1), image.shape[0], image.shape[1]
    y, u, v, cs, h, w = _planes_420(image, fmt)
    return (y, u, v, cs), h, w


def _norm(scale, mean, std, pad_value) -> tuple:
    scale = checks.finite_float("scale", scale)
    triples = []
    for name, val in (("mean", mean), ("std", std)):
        vals = (val,) * 3 if np.ndim(val) == 0 else tuple(np.ravel(val))
        if len(vals) != 3:
            raise EdgerunValueError(f"{name}: expected a number or 3 values, got {val!r}")
        triples.append(tuple(checks.finite_float(f"{name}[{i}]", x) for i, x in enumerate(vals)))
    if 0.0 in triples[1]:
        raise EdgerunValueError(f"std: expected non-zero values, got {std!r}")
    return scale, triples[0], triples[1], checks.finite_float("pad_value", pad_value, 0.0, 255.0)


def _dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise EdgerunTypeError(f"dtype: expected float32 or float16, got {dtype!r}")
    return dt


_BGR = np.arange(3, dtype=np.intp)  # channel offsets of packed pixels
_BGR.flags.writeable = False


def _flat(img: np.ndarray):
    """(H, W, 3) uint8 view, any strides -> (rows, sx, flip, coff): pixel (r, x, c) is
    ``rows[r, x' * sx + coff[c]]`` with x' = x (W-1-x when flip); rows (H, L) has unit element
    stride (a view, no copy). Gray's 0 channel stride gives coff = 0, 0, 0."""
    if img.flags.c_contiguous:  # the common case, without as_strided's ~20 us
        return img.reshape(img.shape[0], -1), 3, False, _BGR
    flip = img.strides[1] < 0
    img = img[:, ::-1] if flip else img
    sc = img.strides[2]
    coff = _BGR * sc if sc >= 0 else _BGR[::-1] * -sc
    img = img[:, :, ::-1] if sc < 0 else img
    length = (img.shape[1] - 1) * img.strides[1] + 2 * abs(sc) + 1
    rows = np.lib.stride_tricks.as_strided(img, (img.shape[0], length), (img.strides[0], 1),
                                           writeable=False)
    return rows, img.strides[1], flip, coff


_SCRATCH = threading.local()  # per thread: the resized image buffers of the last few sizes
_RGB_COFF = np.array([2, 1, 0], np.intp)  # tensor channel c reads source byte 2 - c (BGR -> RGB)
_RGB_COFF.flags.writeable = False


def _packed(img: np.ndarray) -> bool:
    """(H, W, 3) with packed pixels and forward rows (row padding allowed): what cv2.resize takes as is."""
    return img.strides[2] == 1 and img.strides[1] == 3 and img.strides[0] >= 3 * img.shape[1]


# YUV frames cv2.cvtColor reads as they are (contiguous buffers) -> its conversion code to BGR
_CV_YUV = {"nv12": cv2.COLOR_YUV2BGR_NV12, "nv21": cv2.COLOR_YUV2BGR_NV21, "i420": cv2.COLOR_YUV2BGR_I420,
           "YUV420": cv2.COLOR_YUV2BGR_I420, "YVU420": cv2.COLOR_YUV2BGR_YV12, "yuyv": cv2.COLOR_YUV2BGR_YUYV}


# sha256 of OpenCV's output on ``_probe`` frames (resize down by a non-integer factor, exactly 2x, up; the
# YUV -> BGR conversions), the same with opencv-python-headless 4.8.0 and 5.1.0 on x86-64: the arithmetic the
# one-pass kernels reproduce. A build that computes anything else keeps the one-pass kernels, so a frame gives
# the same tensor on every machine: aarch64's 5.1.0 wheel (under qemu, cortex-a76) resizes by non-integer
# factors differently (its 2x resize and YUV conversions agree); letting it resample moved bus.jpg's boxes
# 0.3 px and a keypoint 2.2 px away from x86's in the arm64 lane.
_OPENCV_REFERENCE = "04d9505d51042126df9c89b7e7646c5c5007b1d6a5b6c79d1610672a245e6c85"


def _probe(h: int, w: int, c: int) -> np.ndarray:
    """A deterministic pseudo-random uint8 frame (integer hashing: the same bytes on every platform)."""
    i = np.arange(h * w * c, dtype=np.uint64)
    return ((i * np.uint64(2654435761) >> np.uint64(13)) & np.uint64(255)).astype(np.uint8).reshape(h, w, c)


def opencv_digest() -> str:
    """sha256 of this OpenCV build's resize and YUV conversions on the probe frames."""
    h = hashlib.sha256()
    img = _probe(64, 96, 3)
    for size in ((45, 67), (32, 48), (77, 111)):
        h.update(cv2.resize(img, size[::-1], interpolation=cv2.INTER_LINEAR).tobytes())
    yuv = _probe(96, 96, 1).reshape(96, 96)
    for code in (cv2.COLOR_YUV2BGR_NV12, cv2.COLOR_YUV2BGR_NV21, cv2.COLOR_YUV2BGR_I420, cv2.COLOR_YUV2BGR_YV12):
        h.update(cv2.cvtColor(yuv, code).tobytes())
    h.update(cv2.cvtColor(_probe(64, 96, 2), cv2.COLOR_YUV2BGR_YUYV).tobytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def opencv_exact() -> bool:
    """True when OpenCV's resize/cvtColor compute exactly what edgerun's kernels reproduce (checked once per
    process, ~2 ms): then ``letterbox`` lets OpenCV resample and convert (faster); else it never does."""
    return opencv_digest() == _OPENCV_REFERENCE


def _pack_source(image: np.ndarray, planes: tuple, fmt: str) -> np.ndarray | None:
    """The (H, W, 3) BGR/RGB image ``pack_kernel`` should read, or None for the other kernels.

    Chosen by measurement (benchmarks/bench_preprocess.py, docs/performance.md): packed 3-byte frames
    always take OpenCV's resize (SIMD) + ``pack_kernel``; contiguous YUV frames take cv2.cvtColor + resize +
    ``pack_kernel`` (the caller sends integer decimations of at least 2x per axis, e.g. 1080p -> 640, to
    ``yuv_decimate_kernel`` instead: converting only the sampled pixels is faster); gray, 4-byte pixels,
    strided/flipped views and padded picamera2 buffers keep the one-pass kernels."""
    if not opencv_exact():
        return None
    if len(planes) == 1:
        return planes[0] if _packed(planes[0]) else None
    code = _CV_YUV.get(fmt)
    if code is None or not image.flags.c_contiguous:
        return None
    h, w = image.shape[:2] if fmt == "yuyv" else (image.shape[0] * 2 // 3, image.shape[1])
    dst = _scratch(("bgr", h, w), (h, w, 3))
    return cv2.cvtColor(image, code, dst=dst)  # the array OpenCV wrote (dst itself when it fits)


def _decimated(g: Geometry, box) -> bool:
    """Both axes single-tap (every tensor pixel is one source pixel) and >= 4 source pixels per tensor pixel."""
    if box[1] <= box[0] or box[3] <= box[2] or g.src_h * g.src_w < 4 * g.new_h * g.new_w:
        return False
    _, ymode = _taps(g.src_h, g.new_h, int(box[0]) - g.top, int(box[1] - box[0]), False)
    _, xmode = _taps(g.src_w, g.new_w, int(box[2]) - g.left, int(box[3] - box[2]), True)
    return xmode == 0 and ymode == 0


def _scratch(key: tuple, shape: tuple) -> np.ndarray:
    """This thread's reused uint8 buffer for ``key`` (the last few kept)."""
    bufs = getattr(_SCRATCH, "bufs", None)
    if bufs is None:
        bufs = _SCRATCH.bufs = {}
    buf = bufs.get(key)
    if buf is None:
        if len(bufs) >= 6:
            bufs.clear()
        buf = bufs[key] = np.empty(shape, np.uint8)
    return buf


def _resized(img: np.ndarray, g: Geometry) -> np.ndarray:
    """``img`` resized to (new_h, new_w) by cv2.resize(INTER_LINEAR) into this thread's reused buffer
    (``img`` itself when no resize is needed and it is C-contiguous and writable, else copied there)."""
    if (g.new_h, g.new_w) == img.shape[:2] and img.flags.c_contiguous and img.flags.writeable:
        return img
    dst = _scratch(("resized", g.new_h, g.new_w), (g.new_h, g.new_w, 3))
    if (g.new_h, g.new_w) == img.shape[:2]:  # one kernel signature: C-contiguous writable rows
        np.copyto(dst, img)
        return dst
    return cv2.resize(img, (g.new_w, g.new_h), dst=dst, interpolation=cv2.INTER_LINEAR)


def _pack(img, g: Geometry, box, o, swap: bool, tables) -> None:
    """Packed 3-byte pixels: OpenCV resamples (SIMD; bit-exact with what the one-pass kernels emulate),
    ``pack_kernel`` pads, converts and lays out. ``o``: the (3, H, W) tensor; ``tables``: ``_tables`` in
    tensor channel order."""
    small = _resized(img, g)
    rows = small.reshape(small.shape[0], -1)
    lut, padv, arith, a, b = tables
    pack_kernel(rows, _RGB_COFF if swap else _BGR, o, lut, padv, box, g.top, g.left, arith, a, b)


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
              resize_short: int | None = None, geometry: Geometry | None = None
              ) -> tuple[np.ndarray, Geometry]:
    """Resize (cv2 INTER_LINEAR), pad/crop, convert and normalise ``image`` into a model tensor.

    Returns ``(tensor, geometry)``: tensor ``(3, H, W)`` for layout "chw" or ``(H, W, 3)`` for "hwc",
    written into ``out`` when given (no batch dim: pass ``out=batch[i]``). ``mean``/``std`` are in
    tensor channel order. See ``plan`` for mode/stride/pad_position/resize_short. ``geometry``: the
    caller's ``plan`` of this image with these size/mode/stride/pad_position/resize_short (saves
    planning twice); its source size must be the image's.
    """
    fmt = _choice("pixel_format", pixel_format, PIXEL_FORMATS)
    planes, h, w = _source(image, fmt)
    if geometry is None:
        geo = plan(h, w, size, mode=mode, stride=stride, pad_position=pad_position, resize_short=resize_short)
    elif not isinstance(geometry, Geometry):
        raise EdgerunTypeError(f"geometry: expected a Geometry from plan(), got {type(geometry).__name__}")
    elif (geometry.src_h, geometry.src_w) != (h, w):
        raise EdgerunValueError(f"geometry: planned for a {geometry.src_w}x{geometry.src_h} image, "
                                f"got a {w}x{h} {fmt} image")
    else:
        geo = geometry
    order = PICAMERA_FORMATS.get(fmt, fmt)  # the source's channel order in memory
    swap = _choice("channel_order", channel_order, ("rgb", "bgr")) != ("rgb" if order == "rgb" else "bgr")
    chw = _choice("layout", layout, ("chw", "hwc")) == "chw"
    dt = _dtype(dtype)
    scale, mean, std, pad = _norm(scale, mean, std, pad_value)
    shape = (3, geo.dst_h, geo.dst_w) if chw else (geo.dst_h, geo.dst_w, 3)
    out = checks.out_buffer("out", out, shape, dt)
    box = _box(geo)
    o = out.view(np.uint16) if dt == np.float16 else out
    ty, _ = _taps(h, geo.new_h, int(box[0]) - geo.top, int(box[1] - box[0]), False)
    decimated = len(planes) > 1 and _decimated(geo, box)
    if chw:  # tables in tensor channel order
        if decimated and out.flags.c_contiguous:
            tx, _ = _taps(w, geo.new_w, int(box[2]) - geo.left, int(box[3] - box[2]), True)
            lut, padv, arith, a, b = _tables(scale, mean, std, pad, dt == np.float16)
            yuv_decimate_kernel(*planes, tx[0], o, lut, padv, ty, box, swap, arith, a, b)
            return out, geo
        src = None if decimated else _pack_source(image, planes, fmt)
        if src is not None:  # OpenCV converts/resamples, pack_kernel lays out
            _pack(src, geo, box, o, swap, _tables(scale, mean, std, pad, dt == np.float16))
            return out, geo
    # the one-pass kernels write source channel k to o[k] through table k: reverse the view and the
    # tables when the tensor wants the other channel order
    lut, padv, _, _, _ = _tables(scale, mean[::-1] if swap else mean, std[::-1] if swap else std, pad,
                                 dt == np.float16)
    o = o if chw else o.transpose(2, 0, 1)
    o = o[::-1] if swap else o
    x0, nx = int(box[2]) - geo.left, int(box[3] - box[2])
    if len(planes) == 1:  # modes 0/1 index the (H, W, 3) view with tx; mode 2 reads flat rows
        rows, sx, flip, coff = _flat(planes[0])
        xo, wts, xmode, _ = _htaps(w, geo.new_w, x0, nx, sx, flip)
        tx, _ = _taps(w, geo.new_w, x0, nx, True)
        bgr_kernel(planes[0], tx, rows, xo, wts, coff, xmode, o, lut, padv, ty, box)
    else:  # packed BGR lines: pixel x, channel c at 3 * x + c
        xo, wts, xmode, cols = _htaps(w, geo.new_w, x0, nx, 1, False)
        yuv_kernel(*planes, cols, xo, wts, xmode, o, lut, padv, ty, box)
    return out, geo
