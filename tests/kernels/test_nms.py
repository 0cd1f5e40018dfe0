"""nms vs a naive numpy greedy NMS (torchvision semantics) and cv2.dnn.NMSBoxesBatched.

Tolerance: exact kept sets and order. cv2 differs from torchvision only at IoU == threshold (it keeps
IoU <= t in double, we suppress IoU > t in float32) and for two zero-area boxes (cv2: IoU 1); random
float boxes never hit either case, and the edge-case table tests ours directly.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerun.kernels import EdgerunTypeError, EdgerunValueError, nms


def random_boxes(n: int, seed: int, size: float = 640.0, clustered: bool = False):
    rng = np.random.default_rng(seed)
    if clustered:  # jittered copies of a few objects, like a detector's raw output
        centers = rng.uniform(0, size, (max(1, n // 50), 4))
        base = centers[rng.integers(0, len(centers), n)]
        xy = base[:, :2] + rng.normal(0, 6, (n, 2))
        wh = 20 + np.abs(base[:, 2:]) / 4 + rng.normal(0, 6, (n, 2)).clip(-15, 15)
    else:
        xy = rng.uniform(0, size, (n, 2))
        wh = rng.uniform(2, 160, (n, 2))
    xyxy = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.random(n).astype(np.float32)
    classes = rng.integers(0, 5, n).astype(np.int32)
    return xyxy, scores, classes


def naive_nms(xyxy, scores, classes, iou_threshold, max_det, agnostic=False):
    """Reference greedy NMS: stable descending sort, suppress IoU > threshold (float32, no +1)."""
    order = np.argsort(-scores, kind="stable")
    order = order[~np.isnan(scores[order])]
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    keep = []
    suppressed = np.zeros(len(scores), bool)
    for a, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[a + 1:]
        w = np.maximum(0, np.minimum(xyxy[i, 2], xyxy[rest, 2]) - np.maximum(xyxy[i, 0], xyxy[rest, 0]))
        h = np.maximum(0, np.minimum(xyxy[i, 3], xyxy[rest, 3]) - np.maximum(xyxy[i, 1], xyxy[rest, 1]))
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / (area[i] + area[rest] - inter)
        same = np.ones(len(rest), bool) if agnostic else classes[rest] == classes[i]
        suppressed[rest[(iou > iou_threshold) & same]] = True
    return np.array(keep[:max_det], np.int64)


def cv2_nms(xyxy, scores, classes, iou_threshold, max_det):
    """cv2.dnn.NMSBoxesBatched: (x, y, w, h) boxes, keeps score > score_threshold, top_k caps candidates,
    so max_det is applied to its result."""
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1).astype(np.float64)
    kept = cv2.dnn.NMSBoxesBatched(xywh, scores, classes, 0.0, iou_threshold)
    return np.asarray(kept, np.int64).reshape(-1)[:max_det]


@pytest.mark.parametrize("n", [0, 1, 2, 7, 100, 1000, 10000])
@pytest.mark.parametrize("clustered", [False, True])
@pytest.mark.parametrize("iou", [0.45, 0.7])
def test_matches_naive_and_cv2(n, clustered, iou):
    xyxy, scores, classes = random_boxes(n, seed=n + 1, clustered=clustered)
    max_det = 300 if n > 1000 else 10**6
    got = nms(xyxy, scores, classes, iou_threshold=iou, max_detections=max_det)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, naive_nms(xyxy, scores, classes, iou, max_det))
    np.testing.assert_array_equal(got, cv2_nms(xyxy, scores, classes, iou, max_det))


@pytest.mark.parametrize("n", [0, 5, 1000])
def test_agnostic_matches_naive_and_cv2(n):
    xyxy, scores, classes = random_boxes(n, seed=7, clustered=True)
    got = nms(xyxy, scores, classes, iou_threshold=0.5, class_agnostic=True, max_detections=10**6)
    np.testing.assert_array_equal(got, naive_nms(xyxy, scores, classes, 0.5, 10**6, agnostic=True))
    np.testing.assert_array_equal(got, cv2_nms(xyxy, scores, np.zeros_like(classes), 0.5, 10**6))
    np.testing.assert_array_equal(got, nms(xyxy, scores, None, iou_threshold=0.5, max_detections=10**6))


def test_ties_are_stable_and_sorted():
    box = np.array([[0, 0, 10, 10]], np.float32)
    far = box + 100
    xyxy = np.concatenate([far, box, box, far + 100, box]).astype(np.float32)
    scores = np.array([0.5, 0.9, 0.9, 0.5, 0.9], np.float32)
    np.testing.assert_array_equal(nms(xyxy, scores), [1, 0, 3])  # 2 and 4 are duplicates of 1
    np.testing.assert_array_equal(nms(xyxy, scores, iou_threshold=1.0), [1, 2, 4, 0, 3])


def test_iou_threshold_is_strict():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], np.float32)  # IoU exactly 0.5
    s = np.array([0.9, 0.8], np.float32)
    assert nms(a, s, iou_threshold=0.5).tolist() == [0, 1]
    assert nms(a, s, iou_threshold=0.49).tolist() == [0]


def test_class_aware_vs_agnostic_and_max_detections():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    s = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    c = np.array([0, 1, 0, 1], np.int64)
    assert nms(a, s, c).tolist() == [0, 1, 3]
    assert nms(a, s, c, class_agnostic=True).tolist() == [0, 3]
    assert nms(a, s, c, max_detections=2).tolist() == [0, 1]
    big = np.array([0, 10**9, 0, -5], np.int64)  # sparse / negative ids are remapped, same result
    assert nms(a, s, big).tolist() == [0, 1, 3]


@pytest.mark.parametrize("case,expected", [
    ("nan_score", [1]),          # NaN scores are never kept
    ("zero_area", [0, 1]),       # 0/0 IoU never suppresses (torchvision; cv2 would suppress)
    ("inverted", [0, 1]),        # x2 < x1: no intersection
])
def test_edge_cases(case, expected):
    if case == "nan_score":
        a, s = np.array([[0, 0, 1, 1], [0, 0, 1, 1]], np.float32), np.array([np.nan, 0.5], np.float32)
    elif case == "zero_area":
        a, s = np.array([[5, 5, 5, 5], [5, 5, 5, 5]], np.float32), np.array([0.9, 0.8], np.float32)
    else:
        a, s = np.array([[10, 10, 0, 0], [0, 0, 10, 10]], np.float32), np.array([0.9, 0.8], np.float32)
    assert nms(a, s).tolist() == expected


def test_non_contiguous_inputs():
    xyxy, scores, classes = random_boxes(500, seed=3, clustered=True)
    big = np.zeros((500, 8), np.float32)
    big[:, ::2] = xyxy
    s2 = np.repeat(scores, 2)[::2]
    c2 = np.repeat(classes, 2)[::2]
    np.testing.assert_array_equal(nms(big[:, ::2], s2, c2), nms(xyxy, scores, classes))


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(xyxy=np.zeros((2, 4), np.float64)), EdgerunTypeError, "xyxy: expected dtype float32, got float64"),
    (dict(xyxy=np.zeros((2, 5), np.float32)), EdgerunValueError, r"xyxy: expected shape \(N, 4\), got \(2, 5\)"),
    (dict(xyxy=np.zeros(8, np.float32)), EdgerunValueError, "xyxy: expected 2 dimensions"),
    (dict(scores=np.zeros(3, np.float32)), EdgerunValueError, r"scores: expected shape \(2,\)"),
    (dict(scores=np.zeros(2, np.float16)), EdgerunTypeError, "scores: expected dtype float32, got float16"),
    (dict(class_id=np.zeros(2, np.float32)), EdgerunTypeError, "class_id: expected dtype int32 or int64"),
    (dict(class_id=np.zeros(3, np.int32)), EdgerunValueError, r"class_id: expected shape \(2,\)"),
    (dict(iou_threshold=1.5), EdgerunValueError, r"iou_threshold: expected a finite number in \[0.0, 1.0\]"),
    (dict(max_detections=0), EdgerunValueError, "max_detections: expected > 0, got 0"),
    (dict(xyxy=[[0, 0, 1, 1]] * 2), EdgerunTypeError, "xyxy: expected a numpy.ndarray, got list"),
])
def test_validation(kwargs, exc, match):
    args = dict(xyxy=np.zeros((2, 4), np.float32), scores=np.zeros(2, np.float32), class_id=None)
    args.update(kwargs)
    xyxy, scores, class_id = args.pop("xyxy"), args.pop("scores"), args.pop("class_id")
    with pytest.raises(exc, match=match):
        nms(xyxy, scores, class_id, **args)


def _iou(a, b):
    """IoU in float32 like the kernel; compared with np.float32(threshold) below, because numpy 1.x
    compares a float32 with a Python float in float64 (0.05 != float32(0.05)) and numpy 2 does not."""
    a, b, zero = a.astype(np.float32), b.astype(np.float32), np.float32(0)
    w = max(zero, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(zero, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else zero


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 60), seed=st.integers(0, 2**31), iou=st.floats(0.05, 0.95), agnostic=st.booleans())
def test_property_sorted_subset_separated_and_covering(n, seed, iou, agnostic):
    rng = np.random.default_rng(seed)
    xy = rng.integers(0, 40, (n, 2)).astype(np.float32)  # coarse grid: many ties and overlaps
    xyxy = np.concatenate([xy, xy + rng.integers(1, 20, (n, 2))], 1).astype(np.float32)
    scores = rng.integers(0, 5, n).astype(np.float32) / 4
    classes = rng.integers(0, 3, n).astype(np.int32)
    keep = nms(xyxy, scores, classes, iou_threshold=iou, class_agnostic=agnostic, max_detections=10**6)
    assert len(set(keep.tolist())) == len(keep) and all(0 <= k < n for k in keep)
    ks = scores[keep]
    assert np.all(ks[:-1] >= ks[1:])
    for p in range(len(keep) - 1):  # equal scores keep index order
        if ks[p] == ks[p + 1]:
            assert keep[p] < keep[p + 1]
    same = (lambda i, j: True) if agnostic else (lambda i, j: classes[i] == classes[j])
    for a in range(len(keep)):
        for b in range(a + 1, len(keep)):
            if same(keep[a], keep[b]):
                assert _iou(xyxy[keep[a]], xyxy[keep[b]]) <= np.float32(iou)
    kept = set(keep.tolist())
    for j in range(n):
        if j not in kept:  # suppressed by an earlier kept box of its class
            assert any(same(k, j) and _iou(xyxy[k], xyxy[j]) > np.float32(iou) for k in keep), j
