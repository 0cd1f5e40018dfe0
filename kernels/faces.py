"""YuNet face-detector head: per-stride score, box and 5-landmark decode in one compiled pass, and the
native-resolution input (``pad_chw``: the frame as is, padded bottom/right to the stride).

OpenCV ``FaceDetectorYN`` semantics (``face_detect.cpp``): anchor ``idx = row * cols + col`` of stride
``s``; score = sqrt(clip(cls, 0, 1) * clip(obj, 0, 1)), kept when > threshold (strict, like
``NMSBoxes``); box cx = (col + b0) * s, cy = (row + b1) * s, w = exp(b2) * s, h = exp(b3) * s;
landmark n = ((col + k[2n]) * s, (row + k[2n + 1]) * s). Candidates are sorted by score, ties by
(stride order, anchor index), as OpenCV's stable sort does.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from . import checks
from ._jit import jit
from .errors import EdgerunValueError

__all__ = ["FaceCandidates", "decode_yunet", "pad_chw"]


class FaceCandidates(NamedTuple):
    xyxy: np.ndarray       # (K, 4) float32 tensor pixels
    scores: np.ndarray     # (K,) float32
    landmarks: np.ndarray  # (K, 5, 2) float32 tensor pixels


@jit
def _yunet_level(cls, obj, bbox, kps, cols, stride, thr, bx, sc, lm, k):
    """Append this stride's candidates to the buffers from position ``k``; returns the new count."""
    s = np.float32(stride)
    for j in range(cls.shape[0]):
        c = min(max(cls[j, 0], np.float32(0.0)), np.float32(1.0))
        o = min(max(obj[j, 0], np.float32(0.0)), np.float32(1.0))
        score = np.sqrt(c * o)
        if not score > thr:
            continue
        row, col = j // cols, j % cols
        cx, cy = (col + bbox[j, 0]) * s, (row + bbox[j, 1]) * s
        w, h = np.exp(bbox[j, 2]) * s, np.exp(bbox[j, 3]) * s
        if not (np.isfinite(cx) and np.isfinite(cy) and np.isfinite(w) and np.isfinite(h)):
            continue
        bx[k, 0], bx[k, 1] = cx - w / 2, cy - h / 2
        bx[k, 2], bx[k, 3] = cx + w / 2, cy + h / 2
        for n in range(5):
            lm[k, n, 0] = (col + kps[j, 2 * n]) * s
            lm[k, n, 1] = (row + kps[j, 2 * n + 1]) * s
        sc[k] = score
        k += 1
    return k


def _level(name: str, x, n: int | None, width: int) -> np.ndarray:
    a = checks.array(name, x, np.float32, (2, 3))
    a = a[0] if a.ndim == 3 else a
    if a.shape[1] != width or (n is not None and a.shape[0] != n):
        raise EdgerunValueError(f"{name}: expected (1, {n if n is not None else 'N'}, {width}), got {x.shape}")
    return a


def decode_yunet(cls: Sequence[np.ndarray], obj: Sequence[np.ndarray], bbox: Sequence[np.ndarray],
                 kps: Sequence[np.ndarray], *, input_hw=(640, 640), strides=(8, 16, 32),
                 score_threshold: float = 0.9, max_candidates: int = 5000) -> FaceCandidates:
    """Decode YuNet's 12 outputs (per stride: cls (1,N,1), obj (1,N,1), bbox (1,N,4), kps (1,N,10))
    into score-sorted candidates in tensor pixels, at most ``max_candidates`` (OpenCV's top_k)."""
    thr = np.float32(checks.finite_float("score_threshold", score_threshold, 0.0, 1.0))
    cap = checks.positive_int("max_candidates", max_candidates)
    if not len(cls) == len(obj) == len(bbox) == len(kps) == len(strides):
        raise EdgerunValueError(f"cls/obj/bbox/kps: expected one array per stride {tuple(strides)}, got "
                                f"{len(cls)}, {len(obj)}, {len(bbox)}, {len(kps)}")
    h, w = input_hw
    levels = []
    for i, s in enumerate(strides):
        cols = -(-w // s)
        n = cols * -(-h // s)
        levels.append((_level(f"cls[{i}]", cls[i], n, 1), _level(f"obj[{i}]", obj[i], n, 1),
                       _level(f"bbox[{i}]", bbox[i], n, 4), _level(f"kps[{i}]", kps[i], n, 10), cols, s))
    total = sum(lv[0].shape[0] for lv in levels)
    bx, sc = np.empty((total, 4), np.float32), np.empty(total, np.float32)
    lm = np.empty((total, 5, 2), np.float32)
    k = 0
    for c, o, b, p, cols, s in levels:
        k = _yunet_level(c, o, b, p, cols, s, thr, bx, sc, lm, k)
    order = np.argsort(-sc[:k], kind="stable")[:cap]
    return FaceCandidates(bx[order], sc[order], lm[order])


@jit
def _pad_chw_kernel(image, order, lut, pad, out):
    """out[c, y, x] = lut[c, image[y, x, order[c]]] inside the image, pad[c] on the bottom/right."""
    h, w = image.shape[0], image.shape[1]
    oh, ow = out.shape[1], out.shape[2]
    for c in range(3):
        k = order[c]
        for y in range(oh):
            if y < h:
                for x in range(w):
                    out[c, y, x] = lut[c, image[y, x, k]]
                for x in range(w, ow):
                    out[c, y, x] = pad[c]
            else:
                for x in range(ow):
                    out[c, y, x] = pad[c]


def pad_chw(image: np.ndarray, out: np.ndarray, *, source_order: str = "bgr", channel_order: str = "bgr",
            scale: float = 1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), pad_value: float = 0.0) -> np.ndarray:
    """A uint8 (H, W, 3) frame at its own size into a float32 CHW tensor ``out`` (3, H', W') with
    H' >= H, W' >= W: ``(pixel * scale - mean) / std`` per tensor channel (``mean``/``std`` in tensor
    order), ``pad_value`` (normalised the same way) on the bottom/right (``cv2.FaceDetectorYN`` pads so).
    ``image`` may have any strides."""
    img = checks.array("image", image, np.uint8, 3)
    if img.shape[2] != 3:
        raise EdgerunValueError(f"image: expected (H, W, 3), got shape {image.shape}")
    o = checks.array("out", out, np.float32, 3)
    if o.shape[0] != 3 or o.shape[1] < img.shape[0] or o.shape[2] < img.shape[1]:
        raise EdgerunValueError(f"out: expected (3, >= {img.shape[0]}, >= {img.shape[1]}), got shape {out.shape}")
    if not o.flags.c_contiguous or not o.flags.writeable:
        raise EdgerunValueError("out: must be a C-contiguous writable array")
    for name, v in (("source_order", source_order), ("channel_order", channel_order)):
        if v not in ("bgr", "rgb"):
            raise EdgerunValueError(f"{name}: expected 'bgr' or 'rgb', got {v!r}")
    order = np.array([0, 1, 2] if source_order == channel_order else [2, 1, 0], np.int64)
    m, sd = np.asarray(mean, np.float64).reshape(3, 1), np.asarray(std, np.float64).reshape(3, 1)
    lut = ((np.arange(256, dtype=np.float64)[None] * scale - m) / sd).astype(np.float32)
    pad = ((pad_value * scale - m[:, 0]) / sd[:, 0]).astype(np.float32)
    _pad_chw_kernel(img, order, lut, pad, o)
    return o
