"""Tracking kernels: pairwise IoU and minimum-cost assignment (Hungarian, rectangular, gated).

``linear_assignment(cost, threshold)`` returns matched (row, col) pairs of minimum total cost among
pairs with ``cost <= threshold``; pairs above the threshold are never matched (they are costed as
``threshold + 1`` during the search, the habit of ByteTrack's ``lap.lapjv(extend_cost=True,
cost_limit=thresh)``). O(n^2 m) shortest augmenting path (Kuhn-Munkres with potentials).
"""
from __future__ import annotations

import numpy as np

from . import checks
from ._jit import jit

__all__ = ["box_iou", "linear_assignment"]


@jit
def _iou_kernel(a, b, out):
    for i in range(a.shape[0]):
        area_a = max(a[i, 2] - a[i, 0], 0.0) * max(a[i, 3] - a[i, 1], 0.0)
        for j in range(b.shape[0]):
            w = min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0])
            h = min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1])
            inter = max(w, 0.0) * max(h, 0.0)
            area_b = max(b[j, 2] - b[j, 0], 0.0) * max(b[j, 3] - b[j, 1], 0.0)
            union = area_a + area_b - inter
            out[i, j] = inter / union if union > 0.0 else 0.0
    return out


def box_iou(a: np.ndarray, b: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), xyxy float32 -> (N, M) float32."""
    a = checks.array("a", a, np.float32, 2)
    b = checks.array("b", b, np.float32, 2)
    for name, x in (("a", a), ("b", b)):
        if x.shape[1] != 4:
            raise checks.EdgerunValueError(f"{name}: expected shape (N, 4), got {x.shape}")
    out = checks.out_buffer("out", out, (a.shape[0], b.shape[0]), np.float32)
    return _iou_kernel(a, b, out)


@jit
def _hungarian_kernel(cost, rows_out, cols_out):
    # e-maxx shortest augmenting path on an n x m matrix with n <= m (1-based potentials)
    n, m = cost.shape
    inf = np.inf
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, np.int64)
    way = np.zeros(m + 1, np.int64)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, inf)
        used = np.zeros(m + 1, np.bool_)
        while True:
            used[j0] = True
            i0 = p[j0]
            delta = inf
            j1 = 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = cost[i0 - 1, j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j] = cur
                        way[j] = j0
                    if minv[j] < delta:
                        delta = minv[j]
                        j1 = j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    k = 0
    for j in range(1, m + 1):
        if p[j] != 0:
            rows_out[k] = p[j] - 1
            cols_out[k] = j - 1
            k += 1
    return k


def linear_assignment(cost: np.ndarray, threshold: float) -> np.ndarray:
    """Minimum-cost matching of rows to columns among pairs with ``cost <= threshold``.

    ``cost`` (N, M) float32/float64 (NaN = forbidden). Returns (K, 2) int64 (row, col) pairs sorted
    by row; an empty (0, 2) array when nothing matches."""
    cost = checks.array("cost", cost, (np.float32, np.float64), 2)
    threshold = checks.finite_float("threshold", threshold)
    if cost.size == 0:
        return np.zeros((0, 2), np.int64)
    c = np.where(np.isnan(cost) | (cost > threshold), threshold + 1.0, cost).astype(np.float64)
    transpose = c.shape[0] > c.shape[1]
    if transpose:
        c = np.ascontiguousarray(c.T)
    rows = np.empty(c.shape[0], np.int64)
    cols = np.empty(c.shape[0], np.int64)
    k = _hungarian_kernel(np.ascontiguousarray(c), rows, cols)
    pairs = np.stack([cols[:k], rows[:k]] if transpose else [rows[:k], cols[:k]], axis=1)
    keep = c[rows[:k], cols[:k]] <= threshold
    pairs = pairs[keep]
    return pairs[np.argsort(pairs[:, 0], kind="stable")].astype(np.int64)
