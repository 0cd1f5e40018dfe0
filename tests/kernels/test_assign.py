"""kernels.assign: IoU matrix vs a naive numpy version, Hungarian vs brute force."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgerun.kernels.assign import box_iou, linear_assignment
from edgerun.kernels.errors import EdgerunTypeError, EdgerunValueError


def _naive_iou(a, b):
    out = np.zeros((len(a), len(b)), np.float64)
    for i, p in enumerate(a.astype(np.float64)):
        for j, q in enumerate(b.astype(np.float64)):
            w = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            h = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - w * h
            out[i, j] = w * h / union if union > 0 else 0.0
    return out


def _boxes(rng, n):
    xy = rng.uniform(0, 100, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(1, 40, (n, 2))], 1).astype(np.float32)


@pytest.mark.parametrize("n,m", [(0, 3), (3, 0), (1, 1), (7, 5)])
def test_box_iou_matches_naive(n, m):
    rng = np.random.default_rng(n * 10 + m)
    a, b = _boxes(rng, n), _boxes(rng, m)
    got = box_iou(a, b)
    assert got.shape == (n, m) and got.dtype == np.float32
    np.testing.assert_allclose(got, _naive_iou(a, b), atol=1e-6)


def test_box_iou_noncontiguous_and_degenerate():
    a = np.asfortranarray(np.array([[0, 0, 10, 10], [5, 5, 5, 5]], np.float32))
    got = box_iou(a, a[:, :])
    np.testing.assert_allclose(got, [[1, 0], [0, 0]], atol=1e-6)


def test_box_iou_rejects_bad_input():
    with pytest.raises(EdgerunTypeError, match="a: expected dtype float32"):
        box_iou(np.zeros((1, 4)), np.zeros((1, 4), np.float32))
    with pytest.raises(EdgerunValueError, match=r"b: expected shape \(N, 4\)"):
        box_iou(np.zeros((1, 4), np.float32), np.zeros((1, 3), np.float32))


def _brute(cost, thr):
    """Best (max matches of cost <= thr, then min total cost) over all partial matchings."""
    n, m = cost.shape
    best = (0, 0.0, [])
    for k in range(1, min(n, m) + 1):
        for rows in itertools.combinations(range(n), k):
            for cols in itertools.permutations(range(m), k):
                if all(cost[r, c] <= thr for r, c in zip(rows, cols)):
                    total = sum(cost[r, c] for r, c in zip(rows, cols))
                    if k > best[0] or (k == best[0] and total < best[1] - 1e-12):
                        best = (k, total, list(zip(rows, cols)))
    return best


@pytest.mark.parametrize("seed", range(40))
def test_linear_assignment_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, m = (int(x) for x in rng.integers(1, 5, 2))
    cost = rng.random((n, m))
    thr = 0.7
    pairs = linear_assignment(cost, thr)
    k, total, _ = _brute(cost, thr)
    assert len(pairs) == k
    assert np.isclose(sum(cost[r, c] for r, c in pairs), total)
    assert len(set(pairs[:, 0])) == len(pairs) == len(set(pairs[:, 1]))


def test_linear_assignment_edge_cases():
    assert linear_assignment(np.zeros((0, 3)), 0.5).shape == (0, 2)
    assert linear_assignment(np.full((2, 2), 0.9), 0.5).shape == (0, 2)
    nan = np.array([[np.nan, 0.1], [0.2, np.nan]])
    assert linear_assignment(nan, 0.5).tolist() == [[0, 1], [1, 0]]
    assert linear_assignment(np.array([[0.3], [0.1], [0.2]], np.float32), 0.5).tolist() == [[1, 0]]
