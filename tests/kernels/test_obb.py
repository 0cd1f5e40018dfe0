"""kernels/obb.py vs Ultralytics 8.4's OBB formulas re-written here in numpy (no ultralytics import: the newest
CI lane has none), plus properties, the rotated-box drawing vs cv2.polylines, and bad input.

Tolerances: probiou within 5e-6 absolute of the float32 numpy reference (same formula, float32 throughout,
exp correctly rounded as torch does; libm vs numpy sin/cos/log may differ by 1 ulp); corners/scaling within 1 ulp of the coordinate
(rtol 1e-6, atol 1e-4 px); regularize exact except within 1e-6 rad of a pi/2 multiple (avoided); NMS and
decode exact (indices, classes, scores, boxes).
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerun.kernels import EdgerunTypeError, EdgerunValueError
from edgerun.kernels.draw import class_color, draw_obb
from edgerun.kernels.obb import (MAX_WH, corners_to_xyxy, decode_obb, decode_obb_end2end, obb_nms, probiou,
                                 regularize_rboxes, scale_rboxes, xywhr_to_corners)
from edgerun.kernels.preprocess import plan

F = np.float32
EPS = F(1e-7)


# ---------------------------------------------------------------- numpy references (Ultralytics' formulas)
def ref_cov(b):
    a, bb = b[:, 2] ** 2 / F(12), b[:, 3] ** 2 / F(12)
    co, si = np.cos(b[:, 4]), np.sin(b[:, 4])
    return a * co ** 2 + bb * si ** 2, a * si ** 2 + bb * co ** 2, (a - bb) * co * si


def ref_probiou(b1, b2):
    x1, y1 = b1[:, 0:1], b1[:, 1:2]
    x2, y2 = b2[None, :, 0], b2[None, :, 1]
    a1, b1_, c1 = (v[:, None] for v in ref_cov(b1))
    a2, b2_, c2 = (v[None] for v in ref_cov(b2))
    den = (a1 + a2) * (b1_ + b2_) - (c1 + c2) ** 2
    t1 = ((a1 + a2) * (y1 - y2) ** 2 + (b1_ + b2_) * (x1 - x2) ** 2) / (den + EPS) * F(0.25)
    t2 = ((c1 + c2) * (x2 - x1) * (y1 - y2)) / (den + EPS) * F(0.5)
    det = np.clip(a1 * b1_ - c1 ** 2, 0, None) * np.clip(a2 * b2_ - c2 ** 2, 0, None)
    t3 = np.log(den / (F(4) * np.sqrt(det) + EPS) + EPS) * F(0.5)
    bd = np.clip(t1 + t2 + t3, EPS, F(100))
    ex = np.exp(-bd.astype(np.float64)).astype(F)  # correctly rounded, as torch/libm (numpy's float32 exp is
    return (F(1) - np.sqrt(F(1) - ex + EPS)).astype(F)  # 1 ulp off at 1e-7, which sqrt makes 7e-5)


def ref_fast_nms(b, scores, cls, thr, max_det, agnostic=False):
    """TorchNMS.fast_nms on class-offset boxes, by the full matrix's upper triangle (stable sort)."""
    off = np.zeros(len(b), F) if agnostic else cls.astype(F) * F(MAX_WH)
    bo = b.copy()
    bo[:, 0] += off
    bo[:, 1] += off
    order = np.argsort(-scores, kind="stable")
    ious = np.triu(ref_probiou(bo[order], bo[order]), 1)
    pick = np.flatnonzero((ious > F(thr)).sum(0) <= 0)
    return order[pick][:max_det]


def ref_regularize(b):
    out = b.copy()
    swap = np.mod(b[:, 4], F(np.pi)) >= F(np.pi / 2)
    out[:, 2] = np.where(swap, b[:, 3], b[:, 2])
    out[:, 3] = np.where(swap, b[:, 2], b[:, 3])
    out[:, 4] = np.mod(b[:, 4], F(np.pi / 2))
    return out


def ref_corners(b):
    ctr = b[:, :2]
    w, h, t = b[:, 2:3], b[:, 3:4], b[:, 4:5]
    co, si = np.cos(t), np.sin(t)
    v1 = np.concatenate([w / 2 * co, w / 2 * si], -1)
    v2 = np.concatenate([-h / 2 * si, h / 2 * co], -1)
    return np.stack([ctr + v1 + v2, ctr + v1 - v2, ctr - v1 - v2, ctr - v1 + v2], -2)


def ref_decode(raw, thr, nc):
    x = raw[0].astype(F).T  # (N, 4+C+1)
    cls = x[:, 4:4 + nc]
    cand = np.flatnonzero(cls.max(1) > thr)
    conf, j = cls[cand].max(1), cls[cand].argmax(1)
    order = np.argsort(-conf, kind="stable")
    idx = cand[order]
    return np.concatenate([x[idx, :4], x[idx, -1:]], 1), conf[order], j[order], idx


def rboxes(n, seed, size=640.0, clustered=False):
    rng = np.random.default_rng(seed)
    if clustered:
        base = rng.uniform(0, size, (max(1, n // 20), 5))
        pick = base[rng.integers(0, len(base), n)]
        xy = pick[:, :2] + rng.normal(0, 4, (n, 2))
        wh = 10 + np.abs(pick[:, 2:4]) / 8 + rng.normal(0, 3, (n, 2)).clip(-8, 8)
        t = pick[:, 4] / size * np.pi - np.pi / 4 + rng.normal(0, 0.1, n)
    else:
        xy = rng.uniform(0, size, (n, 2))
        wh = rng.uniform(2, 200, (n, 2))
        t = rng.uniform(-np.pi / 4, 3 * np.pi / 4, n)
    return np.concatenate([xy, wh, t[:, None]], 1).astype(F)


def raw_head(n=8400, nc=15, seed=0, dtype=np.float32, frac=0.02):
    """A (1, 4+C+1, N) head with ~frac of the anchors above 0.25 in some class."""
    rng = np.random.default_rng(seed)
    b = rboxes(n, seed, clustered=True)
    cls = (rng.random((n, nc)) * 0.2).astype(F)
    hot = rng.random(n) < frac
    cls[hot, rng.integers(0, nc, hot.sum())] = rng.uniform(0.25, 1.0, hot.sum())
    raw = np.concatenate([b[:, :4], cls, b[:, 4:]], 1).T[None]
    return np.ascontiguousarray(raw).astype(dtype)


# ---------------------------------------------------------------- probiou
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_probiou_matches_reference(seed):
    a, b = rboxes(150, seed), rboxes(90, seed + 10, clustered=True)
    np.testing.assert_allclose(probiou(a, b), ref_probiou(a, b), rtol=0, atol=5e-6)
    c = rboxes(120, seed + 20, clustered=True)  # many overlapping pairs, values across [0, 1]
    got, want = probiou(c, c), ref_probiou(c, c)
    assert (want > 0.3).sum() > 100
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-6)


def test_probiou_out_buffer_reused_and_empty():
    a = rboxes(5, 3)
    out = np.full((5, 5), -1, F)
    assert probiou(a, a, out=out) is out
    np.testing.assert_allclose(out, ref_probiou(a, a), atol=2e-6)
    assert probiou(a[:0], a).shape == (0, 5)


# sides >= 4 px and aspect <= 8: for thin boxes the formula itself is ill-conditioned near identity (a 1 x 33
# box and the same box turned by pi give 0.9965 vs 0.9995 in float32, in Ultralytics' torch code as in ours)
finite_box = st.tuples(st.floats(-500, 500), st.floats(-500, 500), st.floats(4, 300), st.floats(1, 8),
                       st.floats(-4, 4)).map(lambda t: (t[0], t[1], t[2], t[2] * t[3] / 8 + 2, t[4]))


@settings(max_examples=60, deadline=None)
@given(st.lists(finite_box, min_size=1, max_size=6), st.floats(-np.pi, np.pi))
def test_probiou_properties(boxes, turn):
    b = np.array(boxes, F)
    p = probiou(b, b)
    np.testing.assert_array_equal(p, p.T)                       # symmetric (exactly: same float ops)
    np.testing.assert_allclose(np.diag(p), 0.99953, atol=1e-5)  # identical boxes: the eps floor, not 1
    assert ((p >= -1e-6) & (p <= 1)).all()
    # rotating the whole scene about the origin keeps the geometry, so probiou (to float error)
    co, si = np.cos(turn), np.sin(turn)
    r = b.astype(np.float64).copy()
    r[:, 0], r[:, 1] = co * b[:, 0] - si * b[:, 1], si * b[:, 0] + co * b[:, 1]
    r[:, 4] = b[:, 4] + turn
    np.testing.assert_allclose(probiou(r.astype(F), r.astype(F)), p, atol=2e-3)
    # angle is pi-periodic; a square's probiou ignores its angle
    per = b.copy()
    per[:, 4] += F(np.pi)
    np.testing.assert_allclose(probiou(per, b), p, atol=2e-3)


def test_probiou_far_and_swapped_boxes():
    a = np.array([[100, 100, 40, 10, 0.3]], F)
    far = np.array([[100 + MAX_WH, 100 + MAX_WH, 40, 10, 0.3]], F)
    assert probiou(a, far)[0, 0] <= 1e-6
    swapped = np.array([[100, 100, 10, 40, 0.3 + np.pi / 2]], F)  # same rectangle, other convention
    assert probiou(a, swapped)[0, 0] == pytest.approx(0.99953, abs=1e-4)


# ---------------------------------------------------------------- NMS
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("agnostic", [False, True])
@pytest.mark.parametrize("thr", [0.1, 0.45, 0.7])
def test_nms_matches_fast_nms_reference(seed, agnostic, thr):
    b = rboxes(300, seed, clustered=True)
    rng = np.random.default_rng(seed)
    scores = rng.random(300).astype(F)
    cls = rng.integers(0, 15, 300).astype(np.int64)
    got = obb_nms(b, scores, cls, iou_threshold=thr, class_agnostic=agnostic, max_detections=1000)
    want = ref_fast_nms(b, scores, cls, thr, 1000, agnostic)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int64
    capped = obb_nms(b, scores, cls, iou_threshold=thr, class_agnostic=agnostic, max_detections=7)
    np.testing.assert_array_equal(capped, want[:7])


def test_nms_is_fast_nms_not_greedy():
    # A > B > C by score; A suppresses B; B suppresses C, A does not overlap C. Greedy keeps C, Fast-NMS drops it.
    b = np.array([[100, 100, 40, 40, 0], [125, 100, 40, 40, 0], [150, 100, 40, 40, 0]], F)
    s = np.array([0.9, 0.8, 0.7], F)
    p = probiou(b, b)
    assert p[0, 1] > 0.3 and p[1, 2] > 0.3 and p[0, 2] < 0.3
    np.testing.assert_array_equal(obb_nms(b, s, iou_threshold=0.3), [0])


def test_nms_ties_stable_nan_never_kept_and_classes():
    b = rboxes(6, 9)
    b[:, 0] = np.arange(6) * 1000  # disjoint
    s = np.array([0.5, 0.5, np.nan, 0.9, 0.5, 0.1], F)
    np.testing.assert_array_equal(obb_nms(b, s), [3, 0, 1, 4, 5])
    same = np.repeat(np.array([[50, 50, 20, 10, 0.2]], F), 3, 0)
    s3 = np.array([0.3, 0.9, 0.6], F)
    np.testing.assert_array_equal(obb_nms(same, s3, np.array([0, 1, 0], np.int32)), [1, 2])
    np.testing.assert_array_equal(obb_nms(same, s3, np.array([0, 1, 0], np.int32), class_agnostic=True), [1])
    assert obb_nms(np.zeros((0, 5), F), np.zeros(0, F)).shape == (0,)


# ---------------------------------------------------------------- decode
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_decode_matches_reference(dtype):
    raw = raw_head(2000, 15, seed=4, dtype=dtype)
    got = decode_obb(raw, score_threshold=0.25)
    xywhr, conf, cls, idx = ref_decode(raw, F(0.25), 15)
    assert 20 < len(idx)
    np.testing.assert_array_equal(got.index, idx)
    np.testing.assert_array_equal(got.class_id, cls)
    np.testing.assert_array_equal(got.scores, conf)
    np.testing.assert_array_equal(got.xywhr, xywhr)
    assert got.xywhr.dtype == F and got.class_id.dtype == np.int32
    assert len(decode_obb(raw, max_candidates=5).index) == 5
    two_d = decode_obb(raw[0], num_classes=15)
    np.testing.assert_array_equal(two_d.index, idx)


def test_decode_drops_nonfinite_and_nan_scores():
    raw = raw_head(200, 3, seed=5, frac=1.0)
    raw[0, 4, 0] = np.nan      # a NaN class score: anchor 0 dropped
    raw[0, 0, 1] = np.inf      # a non-finite box: anchor 1 dropped
    raw[0, -1, 2] = np.nan     # a NaN angle: anchor 2 dropped
    got = decode_obb(raw, score_threshold=0.0)
    assert not {0, 1, 2} & set(got.index.tolist())
    assert np.isfinite(got.xywhr).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_decode_end2end_filter_only_and_padding(dtype):
    rows = np.zeros((1, 300, 7), F)
    rows[0, :4] = [[10, 20, 30, 8, 0.9, 3, 0.5], [50, 60, 20, 9, 0.6, 1, -0.2], [1, 1, 2, 2, 0.25, 0, 0],
                   [70, 80, 20, 10, 0.3, 7, 1.2]]
    got = decode_obb_end2end(rows.astype(dtype), score_threshold=0.25)
    np.testing.assert_array_equal(got.index, [0, 1, 3])  # strict threshold; zero rows never pass
    np.testing.assert_array_equal(got.class_id, [3, 1, 7])
    np.testing.assert_allclose(got.xywhr, rows[0, [0, 1, 3]][:, [0, 1, 2, 3, 6]], rtol=1e-3)
    assert len(decode_obb_end2end(rows, score_threshold=0.0, max_candidates=2).index) == 2


# ---------------------------------------------------------------- regularize / corners / bounds / scaling
def test_regularize_matches_reference():
    b = rboxes(500, 6)
    b[:, 4] = np.random.default_rng(6).uniform(-7, 7, 500)
    k = np.abs(np.remainder(b[:, 4], np.pi / 2)) < 1e-5
    b = b[~k & (np.abs(np.remainder(b[:, 4], np.pi / 2) - np.pi / 2) > 1e-5)]
    got = regularize_rboxes(b)
    np.testing.assert_array_equal(got, ref_regularize(b))
    assert ((got[:, 4] >= 0) & (got[:, 4] < np.pi / 2)).all()
    # the same rectangle: corners agree as a set
    c1, c2 = xywhr_to_corners(b), xywhr_to_corners(got)
    np.testing.assert_allclose(np.sort(c1.reshape(-1, 8), 1), np.sort(c2.reshape(-1, 8), 1), atol=2e-3)
    inplace = b.copy()
    assert regularize_rboxes(inplace, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, got)


def test_corners_and_bounds_match_reference():
    b = rboxes(400, 7)
    c = xywhr_to_corners(b)
    np.testing.assert_allclose(c, ref_corners(b), rtol=1e-6, atol=1e-4)
    xyxy = corners_to_xyxy(c)
    np.testing.assert_array_equal(xyxy, np.stack([c[..., 0].min(1), c[..., 1].min(1), c[..., 0].max(1),
                                                  c[..., 1].max(1)], -1))
    out = np.empty((400, 4, 2), F)
    assert xywhr_to_corners(b, out=out) is out
    axis = xywhr_to_corners(np.array([[10, 20, 8, 4, 0]], F))[0]
    np.testing.assert_allclose(axis, [[14, 22], [14, 18], [6, 18], [6, 22]])


@pytest.mark.parametrize("src", [(480, 640), (1080, 810), (333, 1000)])
def test_scale_rboxes_as_scale_boxes_xywh(src):
    g = plan(src[0], src[1], 640)
    sh, sw = src
    gain = min(640 / sh, 640 / sw)  # Ultralytics 8.4 scale_boxes, recomputed from the shapes as it does
    nh, nw = max(round(sh * gain), 1), max(round(sw * gain), 1)
    gx, gy = nw / sw, nh / sh
    px, py = round((640 - nw) / 2 - 0.1), round((640 - nh) / 2 - 0.1)
    b = rboxes(50, 8)
    want = b.copy()
    want[:, 0] = (b[:, 0] - F(px)) / F(gx)
    want[:, 1] = (b[:, 1] - F(py)) / F(gy)
    want[:, 2] /= F(gx)
    want[:, 3] /= F(gy)
    np.testing.assert_allclose(scale_rboxes(b, g), want, rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(scale_rboxes(b, g)[:, 4], b[:, 4])


# ---------------------------------------------------------------- drawing
def test_draw_obb_matches_polylines():
    img = np.zeros((200, 240, 3), np.uint8)
    b = np.array([[120, 100, 120, 50, 0.4], [60, 60, 30, 30, 1.0]], F)
    c = xywhr_to_corners(b)
    cls = np.array([2, 5], np.int32)
    assert draw_obb(img, c, cls, thickness=2, labels=False) is img
    ref = np.zeros_like(img)
    for pts, k in zip(c, cls):
        cv2.polylines(ref, [np.rint(pts).astype(np.int32).reshape(-1, 1, 2)], True, class_color(int(k)), 2)
    np.testing.assert_array_equal(img, ref)
    labelled = draw_obb(np.zeros_like(img), c, cls, np.array([0.9, 0.5], F), names=["a", "b", "car"])
    assert not np.array_equal(labelled, img)


def test_draw_obb_skips_nonfinite_and_validates():
    img = np.zeros((50, 50, 3), np.uint8)
    c = np.full((1, 4, 2), np.nan, F)
    draw_obb(img, c, np.array([0], np.int32))
    assert not img.any()
    draw_obb(img, np.full((1, 4, 2), 1e30, F), np.array([0], np.int32))  # huge: clipped, no crash
    with pytest.raises(EdgerunValueError):
        draw_obb(img, np.zeros((1, 5, 2), F), np.array([0], np.int32))
    with pytest.raises(EdgerunValueError):
        draw_obb(img, np.zeros((2, 4, 2), F), np.array([0], np.int32))
    with pytest.raises(EdgerunTypeError):
        draw_obb(img.astype(np.float32), np.zeros((1, 4, 2), F), np.array([0], np.int32))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("call", [
    lambda: probiou(np.zeros((2, 5)), np.zeros((2, 5), F)),             # float64
    lambda: obb_nms(np.zeros((2, 5), np.float16), np.zeros(2, F)),
    lambda: decode_obb(np.zeros((1, 20, 10), np.int32)),
    lambda: regularize_rboxes([[0, 0, 1, 1, 0]]),                        # not an ndarray
    lambda: obb_nms(np.zeros((2, 5), F), np.zeros(2, F), np.zeros(2, np.float32)),
])
def test_bad_dtype_raises_type_error(call):
    with pytest.raises(EdgerunTypeError):
        call()


@pytest.mark.parametrize("call", [
    lambda: probiou(np.zeros((2, 4), F), np.zeros((2, 5), F)),
    lambda: obb_nms(np.zeros((3, 5), F), np.zeros(2, F)),
    lambda: obb_nms(np.zeros((2, 5), F), np.zeros(2, F), np.zeros(3, np.int32)),
    lambda: obb_nms(np.zeros((2, 5), F), np.zeros(2, F), iou_threshold=1.5),
    lambda: decode_obb(np.zeros((1, 5, 10), F)),                          # no class row
    lambda: decode_obb(np.zeros((1, 20, 10), F), num_classes=16),
    lambda: decode_obb(np.zeros((2, 20, 10), F)),                         # batch 2
    lambda: decode_obb_end2end(np.zeros((1, 300, 6), F)),
    lambda: xywhr_to_corners(np.zeros((2, 5), F), out=np.zeros((2, 4), F)),
    lambda: corners_to_xyxy(np.zeros((2, 8), F)),
    lambda: probiou(np.zeros((2, 5), F), np.zeros((3, 5), F), out=np.zeros((3, 2), F)),
])
def test_bad_shape_raises_value_error(call):
    with pytest.raises(EdgerunValueError):
        call()


def test_scale_rboxes_rejects_bad_geometry():
    with pytest.raises(EdgerunTypeError):
        scale_rboxes(np.zeros((1, 5), F), object())
