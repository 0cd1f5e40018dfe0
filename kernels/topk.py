"""Classification and label-map heads: softmax, top-k and per-pixel argmax, one compiled pass each.

Ranking is stable: equal scores keep ascending class index (``np.argsort(-x, kind="stable")``), which
matters for quantized models whose logits tie exactly. NaN ranks below every number (it is never a
top class while a number is available); softmax of a row holding NaN is NaN, as numpy's would be.
"""
from __future__ import annotations

import numpy as np

from . import checks
from ._jit import inner, jit
from .errors import EdgerunValueError

__all__ = ["softmax", "topk", "argmax_map"]


# ------------------------------------------------------------------------------ kernels
@jit
def _softmax_kernel(x, out):
    """Row-wise softmax, float32 in/out, float64 accumulation, max subtracted."""
    for i in range(x.shape[0]):
        m = np.float64(x[i, 0])
        for j in range(1, x.shape[1]):
            v = np.float64(x[i, j])
            m = v if (v > m or v != v) else m
        total = 0.0
        for j in range(x.shape[1]):
            total += np.exp(np.float64(x[i, j]) - m)
        for j in range(x.shape[1]):
            out[i, j] = np.float32(np.exp(np.float64(x[i, j]) - m) / total)


@inner
def _before(a, ia, b, ib) -> bool:
    """Does (score a, index ia) rank before (b, ib)? NaN ranks last; ties by lower index."""
    if a != a:
        return b != b and ia < ib
    if b != b:
        return True
    return a > b or (a == b and ia < ib)


@jit
def _topk_kernel(x, k, idx, val):
    """Per row, the k best (score, index) pairs by insertion into a sorted list of length k."""
    for i in range(x.shape[0]):
        n = 0
        for j in range(x.shape[1]):
            v = x[i, j]
            if n == k and not _before(v, j, val[i, k - 1], idx[i, k - 1]):
                continue
            p = min(n, k - 1)
            while p > 0 and _before(v, j, val[i, p - 1], idx[i, p - 1]):
                val[i, p], idx[i, p] = val[i, p - 1], idx[i, p - 1]
                p -= 1
            val[i, p], idx[i, p] = v, j
            n = min(n + 1, k)


@jit
def _argmax_hwc_kernel(x, out):
    """(H, W, C) scores -> (H, W) uint8 first-maximum class (NaN never wins over a number)."""
    for y in range(x.shape[0]):
        for xx in range(x.shape[1]):
            best = x[y, xx, 0]
            arg = 0
            for c in range(1, x.shape[2]):
                v = x[y, xx, c]
                if v > best or (best != best and v == v):
                    best, arg = v, c
            out[y, xx] = arg


# ----------------------------------------------------------------------------- wrappers
def _rows(name: str, x) -> np.ndarray:
    x = checks.array(name, x, np.float32, (1, 2))
    x = x.reshape(1, -1) if x.ndim == 1 else x
    if x.shape[1] == 0:
        raise EdgerunValueError(f"{name}: expected at least one class, got shape {x.shape}")
    return x


def softmax(logits: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Softmax over the last axis of ``(C,)`` or ``(N, C)`` float32 logits -> float32, same shape."""
    x = _rows("logits", logits)
    o = checks.out_buffer("out", out, logits.shape, np.float32)
    _softmax_kernel(x, o.reshape(x.shape))
    return o


def topk(scores: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` highest scores per row of ``(C,)`` or ``(N, C)`` float32 scores.

    Returns ``(class_id int64, score float32)``, each ``(k,)`` or ``(N, k)``, best first; equal
    scores in ascending class order; ``k`` is capped at C.
    """
    x = _rows("scores", scores)
    k = min(checks.positive_int("k", k), x.shape[1])
    idx = np.empty((x.shape[0], k), np.int64)
    val = np.empty((x.shape[0], k), np.float32)
    _topk_kernel(x, k, idx, val)
    if scores.ndim == 1:
        return idx[0], val[0]
    return idx, val


def argmax_map(scores: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel class of ``(H, W, C)`` float32 scores (C <= 256) -> ``(H, W)`` uint8 label map."""
    x = checks.array("scores", scores, np.float32, 3)
    if not 1 <= x.shape[2] <= 256:
        raise EdgerunValueError(f"scores: expected 1..256 classes on the last axis, got shape {x.shape}")
    o = checks.out_buffer("out", out, x.shape[:2], np.uint8)
    _argmax_hwc_kernel(x, o)
    return o
