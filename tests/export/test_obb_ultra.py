"""kernels/obb.py against Ultralytics itself (export lane): batch_probiou, TorchNMS.fast_nms, the rotated
non_max_suppression, regularize_rboxes, xywhr2xyxyxyxy, Results.obb.xyxy and scale_boxes(xywh=True).

Inputs: random boxes, clustered (overlapping) boxes, and detector-shaped (1, 20, 8400) heads (15 DOTA classes)
mapped to square and non-square frames. (A YOLO11n-OBB built from the yaml with random weights was tried: its
class scores are all ~0.5 with massive ties, where torch's unstable argsort makes any comparison arbitrary; the
full model x export comparison is h24t's ultra_zoo harness.) Tolerances: probiou 5e-6 absolute (torch's SLEEF sin/cos vs libm, 1 ulp amplified);
kept NMS indices equal (a pair within 1e-5 of the threshold may flip; none occur on these inputs, asserted);
corners/scaling 1e-4 px + 1e-6 relative; regularize exact.
"""
from __future__ import annotations

import numpy as np
import pytest

from edgerun.kernels.obb import (MAX_WH, corners_to_xyxy, decode_obb, obb_nms, probiou, regularize_rboxes,
                                 scale_rboxes, xywhr_to_corners)
from edgerun.kernels.preprocess import plan

pytest.importorskip("ultralytics", reason="needs the ultralytics extra (CI's export lane: "
                    "pip install torch==2.14.1 torchvision==0.29.1, then ultralytics==8.4.190)")
torch = pytest.importorskip("torch")

from ultralytics.utils import metrics, nms, ops  # noqa: E402

F = np.float32


def boxes(n, seed, clustered=False):
    rng = np.random.default_rng(seed)
    if clustered:
        base = rng.uniform(0, 640, (max(1, n // 20), 5))
        pick = base[rng.integers(0, len(base), n)]
        xy = pick[:, :2] + rng.normal(0, 4, (n, 2))
        wh = 10 + np.abs(pick[:, 2:4]) / 8 + rng.normal(0, 3, (n, 2)).clip(-8, 8)
        t = pick[:, 4] / 640 * np.pi - np.pi / 4 + rng.normal(0, 0.1, n)
    else:
        xy, wh, t = rng.uniform(0, 640, (n, 2)), rng.uniform(2, 200, (n, 2)), rng.uniform(-1, 3, n)
    return np.concatenate([xy, wh, t[:, None]], 1).astype(F)


def raw_head(n=8400, nc=15, seed=0, frac=0.03):
    """A (1, 4+C+1, N) float32 head shaped like a detector's: jittered boxes around a few objects (DOTA-like
    15 classes), ~frac of the anchors above 0.25, angles in the YOLOv8/11 range [-pi/4, 3pi/4)."""
    rng = np.random.default_rng(seed)
    b = boxes(n, seed, clustered=True)
    cls = (rng.random((n, nc)) * 0.2).astype(F)
    hot = rng.random(n) < frac
    cls[hot, rng.integers(0, nc, hot.sum())] = rng.uniform(0.25, 1.0, hot.sum())
    return np.ascontiguousarray(np.concatenate([b[:, :4], cls, b[:, 4:]], 1).T[None]).astype(F)


@pytest.mark.parametrize("seed", range(3))
def test_probiou_equals_batch_probiou(seed):
    for a, b in ((boxes(200, seed), boxes(150, seed + 5)), (boxes(300, seed, True), boxes(300, seed, True))):
        want = metrics.batch_probiou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        np.testing.assert_allclose(probiou(a, b), want, rtol=0, atol=5e-6)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("agnostic", [False, True])
def test_nms_equals_fast_nms(seed, agnostic):
    b = boxes(400, seed, clustered=True)
    rng = np.random.default_rng(seed)
    s = rng.random(400).astype(F)
    c = rng.integers(0, 15, 400)
    off = np.zeros((400, 1), F) if agnostic else c[:, None].astype(F) * F(MAX_WH)
    shifted = torch.from_numpy(np.concatenate([b[:, :2] + off, b[:, 2:]], 1))
    for thr in (0.1, 0.45, 0.7):
        want = nms.TorchNMS.fast_nms(shifted, torch.from_numpy(s), thr, iou_func=metrics.batch_probiou).numpy()
        np.testing.assert_array_equal(obb_nms(b, s, c, iou_threshold=thr, class_agnostic=agnostic,
                                              max_detections=10_000), want)


def test_geometry_helpers_equal_ops():
    b = boxes(500, 11)
    b[:, 4] = np.random.default_rng(11).uniform(-7, 7, 500)
    np.testing.assert_array_equal(regularize_rboxes(b), ops.regularize_rboxes(torch.from_numpy(b)).numpy())
    corners = xywhr_to_corners(b)
    np.testing.assert_allclose(corners, ops.xywhr2xyxyxyxy(b), rtol=1e-6, atol=1e-4)
    from ultralytics.engine.results import OBB

    data = np.concatenate([b, np.ones((500, 1), F), np.zeros((500, 1), F)], 1)
    np.testing.assert_allclose(corners_to_xyxy(corners), OBB(data, (640, 640)).xyxy, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("conf,iou", [(0.25, 0.7), (0.5, 0.45)])
@pytest.mark.parametrize("src_hw", [(640, 640), (1024, 1024), (480, 854), (1080, 810)])
def test_decode_nms_scale_equal_ultralytics(conf, iou, src_hw):
    """decode_obb + obb_nms + scale_rboxes == non_max_suppression(rotated=True) + scale_boxes(xywh=True), as the
    OBB predictor chains them, on an 8400-anchor head, square and non-square frames."""
    raw = raw_head(seed=sum(src_hw))
    want = nms.non_max_suppression(torch.from_numpy(raw), conf, iou, nc=15, rotated=True, max_det=300)[0]
    want = want.numpy()  # rows: x, y, w, h, conf, cls, angle
    cand = decode_obb(raw, score_threshold=conf)
    assert len(cand.scores) > 100  # enough candidates to exercise the NMS
    keep = obb_nms(cand.xywhr, cand.scores, cand.class_id, iou_threshold=iou, max_detections=300)
    got = cand.xywhr[keep]
    assert 0 < len(keep) == len(want)
    np.testing.assert_array_equal(cand.class_id[keep], want[:, 5].astype(np.int32))
    np.testing.assert_array_equal(cand.scores[keep], want[:, 4])
    np.testing.assert_array_equal(got, want[:, [0, 1, 2, 3, 6]])
    # mapped back as the OBB predictor does: scale_boxes(img.shape[2:], rboxes[:, :4], orig.shape, xywh=True)
    geo = plan(src_hw[0], src_hw[1], 640)
    ref = torch.from_numpy(want[:, [0, 1, 2, 3, 6]].copy())
    ref[:, :4] = ops.scale_boxes((640, 640), ref[:, :4], src_hw, xywh=True)
    np.testing.assert_allclose(scale_rboxes(got, geo), ref.numpy(), rtol=1e-6, atol=1e-4)
