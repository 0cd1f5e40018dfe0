"""picamera2's buffers as picamera2 lays them out (row padding included), made from a BGR picture:
``packed`` (RGB888, BGR888, XRGB8888, XBGR8888: MappedArray's (H, W, bpp) view of a padded buffer)
and ``planar`` (YUV420, YVU420: the (H*3//2, stride) array sliced to [:, :W]). Padding and X bytes
are random, so a reader that touches them shows it."""
from __future__ import annotations

import cv2
import numpy as np


def garbage(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def stride_for(row_bytes: int, align: int = 64) -> int:
    """A libcamera-like stride: the row rounded up to ``align`` bytes (+ ``align`` when already
    aligned, so every buffer here really has padding)."""
    return (row_bytes // align + 1) * align


def packed(bgr: np.ndarray, fmt: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(picamera2's MappedArray-style view of a padded buffer, the BGR picture it holds)."""
    h, w = bgr.shape[:2]
    pixel = bgr[:, :, ::-1] if fmt in ("BGR888", "XBGR8888") else bgr  # R first in memory
    bpp = 4 if fmt.startswith("X") else 3
    if bpp == 4:
        pixel = np.concatenate([pixel, garbage((h, w, 1), seed)], axis=2)  # X: garbage, never read
    s = stride_for(w * bpp)
    buf = garbage((h * s,), seed + 1)  # padding bytes: garbage
    rows = buf.reshape(h, s)
    rows[:, :w * bpp] = pixel.reshape(h, -1)
    return rows[:, :w * bpp].reshape(h, w, bpp), bgr


def planar(bgr: np.ndarray, fmt: str, seed: int = 0, pad: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """picamera2's YUV420/YVU420 array ((H*3//2, stride) sliced to [:, :W]) and OpenCV's BGR of it."""
    h, w = bgr.shape[:2]
    flat, c = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1), (h // 2) * (w // 2)
    y = flat[:h * w].reshape(h, w)
    u, v = flat[h * w:h * w + c].reshape(h // 2, w // 2), flat[h * w + c:].reshape(h // 2, w // 2)
    first, second = (v, u) if fmt == "YVU420" else (u, v)
    s = stride_for(w) if pad else w
    buf = garbage((h * 3 // 2 * s,), seed)  # padding bytes: garbage
    buf[:h * s].reshape(h, s)[:, :w] = y
    q = (h // 2) * (s // 2)
    buf[h * s:h * s + q].reshape(h // 2, s // 2)[:, :w // 2] = first
    buf[h * s + q:h * s + 2 * q].reshape(h // 2, s // 2)[:, :w // 2] = second
    array = buf.reshape(h * 3 // 2, s)[:, :w]
    contiguous = np.concatenate([y.reshape(-1), first.reshape(-1), second.reshape(-1)]).reshape(h * 3 // 2, w)
    want = cv2.cvtColor(contiguous, cv2.COLOR_YUV2BGR_YV12 if fmt == "YVU420" else cv2.COLOR_YUV2BGR_I420)
    return array, want
