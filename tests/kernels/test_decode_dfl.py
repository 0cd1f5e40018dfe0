"""decode(head="dfl") vs Ultralytics' own decode written in numpy (``make_anchors``, the DFL softmax and
its arange conv, ``dist2bbox(xywh=True)``, stride multiply, sigmoid), then the same candidate rules as the
"yolov8" head. Tolerances: the same anchors, classes and order; scores within 2.4e-7 (2 float32 ulp below 1; sigmoid: exp
in numpy vs LLVM); boxes within 1e-3 px (softmax summation order)."""
from __future__ import annotations

import numpy as np
import pytest

from edgerun.kernels import Candidates, EdgerunValueError, decode


def ultralytics_dfl(out, hw, strides=(8, 16, 32), reg=16, nc=80):
    """(1, 4*reg+nc, N) raw head -> (1, 4+nc, N) as Ultralytics' Detect._inference returns it (float32)."""
    x = out[0].astype(np.float32)
    pts, st = [], []
    for s in strides:
        h, w = -(-hw[0] // s), -(-hw[1] // s)
        sy, sx = np.meshgrid(np.arange(h, dtype=np.float32) + 0.5, np.arange(w, dtype=np.float32) + 0.5,
                             indexing="ij")
        pts.append(np.stack([sx.ravel(), sy.ravel()], 0))
        st.append(np.full(h * w, s, np.float32))
    anchors, stride = np.concatenate(pts, 1), np.concatenate(st)
    logits = x[:4 * reg].reshape(4, reg, -1)
    e = np.exp(logits - logits.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    dist = (p * np.arange(reg, dtype=np.float32)[None, :, None]).sum(1)
    x1y1, x2y2 = anchors - dist[:2], anchors + dist[2:]
    box = np.concatenate([(x1y1 + x2y2) / 2, x2y2 - x1y1]) * stride
    cls = 1 / (1 + np.exp(-x[4 * reg:4 * reg + nc]))
    return np.concatenate([box, cls])[None].astype(np.float32)


def raw_head(hw, nc=80, reg=16, strides=(8, 16, 32), seed=0, dtype=np.float32):
    n = sum(-(-hw[0] // s) * -(-hw[1] // s) for s in strides)
    rng = np.random.default_rng(seed)
    box = rng.normal(0, 3, (4 * reg, n))
    cls = np.round(rng.normal(-4, 2, (nc, n)), 1)  # rounded: exact ties between classes and anchors
    return np.concatenate([box, cls])[None].astype(dtype)


def assert_close(got: Candidates, want: Candidates):
    assert got.xyxy.dtype == np.float32 and got.index.dtype == np.int32 and got.class_id.dtype == np.int32
    np.testing.assert_array_equal(got.index, want.index)
    np.testing.assert_array_equal(got.class_id, want.class_id)
    np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=2.4e-7)
    np.testing.assert_allclose(got.xyxy, want.xyxy, rtol=0, atol=1e-3)


@pytest.mark.parametrize("hw", [(640, 640), (384, 640), (100, 52)])
@pytest.mark.parametrize("thr", [0.001, 0.25, 0.6])
def test_matches_ultralytics_decode(hw, thr):
    out = raw_head(hw, seed=hw[0] + int(thr * 1000))
    want = decode(ultralytics_dfl(out, hw), "yolov8", score_threshold=thr)
    got = decode(out, "dfl", score_threshold=thr, input_hw=hw, num_classes=80)
    assert len(want.scores) > 0
    assert_close(got, want)


def test_other_reg_max_strides_and_classes():
    hw, strides = (96, 160), (4, 8, 16, 32)
    out = raw_head(hw, nc=3, reg=8, strides=strides, seed=3)
    want = decode(ultralytics_dfl(out, hw, strides, reg=8, nc=3), "yolov8", score_threshold=0.1)
    assert_close(decode(out, "dfl", score_threshold=0.1, input_hw=hw, strides=strides, reg_max=8, num_classes=3),
                 want)


def test_float16_equals_widened_float32():
    out16 = raw_head((160, 160), seed=7, dtype=np.float16)
    a = decode(out16, "dfl", input_hw=(160, 160), num_classes=80, score_threshold=0.05)
    b = decode(out16.astype(np.float32), "dfl", input_hw=(160, 160), num_classes=80, score_threshold=0.05)
    assert len(a.scores) > 0
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_threshold_is_strict_on_the_sigmoid():
    out = np.full((1, 64 + 2, 21), -20, np.float32)  # 32x32 input: 16 + 4 + 1 anchors
    out[0, 64, 3] = 0.0                               # sigmoid 0.5 exactly: not > 0.5
    out[0, 65, 5] = np.float32(1e-3)                  # just above
    c = decode(out, "dfl", score_threshold=0.5, input_hw=(32, 32), num_classes=2)
    assert c.index.tolist() == [5] and c.class_id.tolist() == [1]


def test_nan_and_inf_never_reach_candidates():
    out = raw_head((64, 64), nc=2, seed=1)
    out[0, 64:] = 3.0
    out[0, 64, 0] = np.nan                # NaN class logit: dropped
    out[0, 5, 1] = np.nan                 # NaN distance logit: NaN box, dropped
    out[0, 65, 2] = np.inf                # +inf logit: dropped like a +inf score
    c = decode(out, "dfl", input_hw=(64, 64), num_classes=2)
    assert not {0, 1, 2} & set(c.index.tolist()) and len(c.index) == out.shape[2] - 3
    assert np.isfinite(c.xyxy).all() and np.isfinite(c.scores).all()


@pytest.mark.parametrize("kw,match", [
    (dict(input_hw=(640, 640), num_classes=80, reg_max=8), r"expected 112 rows \(4\*reg_max \+ num_classes, reg_max=8\)"),
    (dict(input_hw=(320, 320), num_classes=80), r"expected 2100 anchors for input_hw=\(320, 320\).*head 'dfl'"),
    (dict(input_hw=(640, 640), num_classes=80, reg_max=0), "reg_max: expected > 0"),
    (dict(input_hw=(640, 640), num_classes=81), "num_classes: expected <= 80"),
])
def test_validation(kw, match):
    with pytest.raises(EdgerunValueError, match=match):
        decode(np.zeros((1, 144, 8400), np.float32), "dfl", **kw)
