"""decode vs naive numpy decoders (exact: same anchors, classes, order; boxes and scores bit-equal),
edge cases (ties, thresholds, NaN/Inf, float16, views), validation, and real models from ../shared."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from helpers import shared_dir

from edgerun.kernels import Candidates, EdgerunTypeError, EdgerunValueError, decode, nms, scale_boxes

SHARED = shared_dir()


# ---------------------------------------------------------------- naive references
def _sorted(idx, scores, cls, xyxy, cap):
    order = np.argsort(-scores, kind="stable")[:cap]
    return Candidates(xyxy[order].astype(np.float32), scores[order], cls[order].astype(np.int32),
                      idx[order].astype(np.int32))


def _xyxy(p):
    half = p[:, 2:4] / np.float32(2)
    return np.concatenate([p[:, :2] - half, p[:, :2] + half], 1)


def _finite(c: Candidates) -> Candidates:
    ok = np.isfinite(c.xyxy).all(1) & np.isfinite(c.scores)
    return Candidates(*(a[ok] for a in c))


def ref_v8(out, thr=0.25, cap=30000, nc=None):
    p = out.reshape(out.shape[-2:]).T.astype(np.float32)
    nc = nc or p.shape[1] - 4
    cls_scores = p[:, 4:4 + nc]
    with np.errstate(invalid="ignore"):
        s = cls_scores.max(1)  # NaN-propagating like torch.amax
    idx = np.flatnonzero(s > thr)
    c = Candidates(_xyxy(p[idx]), s[idx], cls_scores[idx].argmax(1), idx)
    c = _finite(c)
    return _sorted(c.index, c.scores, c.class_id, c.xyxy, cap)


def ref_v5(out, thr=0.25, cap=30000):
    p = out.reshape(out.shape[-2:]).astype(np.float32)
    idx = np.flatnonzero(p[:, 4] > thr)
    conf = p[idx, 5:] * p[idx, 4:5]
    s = conf.max(1)
    keep = s > thr
    c = _finite(Candidates(_xyxy(p[idx[keep]]), s[keep], conf[keep].argmax(1), idx[keep]))
    return _sorted(c.index, c.scores, c.class_id, c.xyxy, cap)


def yolox_demo_postprocess(out, img_size, strides=(8, 16, 32)):
    """YOLOX's demo_postprocess, re-derived: per stride, grid rows then cols; float64 math, stored float32."""
    p = out.reshape(out.shape[-2:]).astype(np.float32).copy()
    grids, strd = [], []
    for s in strides:
        hs, ws = img_size[0] // s, img_size[1] // s
        gy, gx = np.divmod(np.arange(hs * ws), ws)
        grids.append(np.stack([gx, gy], 1))
        strd.append(np.full((hs * ws, 1), s))
    grids, strd = np.concatenate(grids), np.concatenate(strd)
    p[:, :2] = (p[:, :2] + grids) * strd
    with np.errstate(over="ignore"):
        p[:, 2:4] = np.exp(p[:, 2:4]) * strd
    return p


def ref_yolox(out, img_size, thr=0.25, cap=30000):
    p = yolox_demo_postprocess(out, img_size)
    conf = p[:, 5:] * p[:, 4:5]
    s = conf.max(1)
    idx = np.flatnonzero(s > thr)
    c = _finite(Candidates(_xyxy(p[idx]), s[idx], conf[idx].argmax(1), idx))
    return _sorted(c.index, c.scores, c.class_id, c.xyxy, cap)


def assert_same(got: Candidates, want: Candidates, box_rtol: float = 0.0):
    assert got.xyxy.dtype == np.float32 and got.xyxy.shape == (len(want.scores), 4)
    assert got.scores.dtype == np.float32 and got.class_id.dtype == np.int32 and got.index.dtype == np.int32
    np.testing.assert_array_equal(got.index, want.index)
    np.testing.assert_array_equal(got.class_id, want.class_id)
    np.testing.assert_array_equal(got.scores, want.scores)
    if box_rtol:  # YOLOX: exp in float64 vs numpy's float32 exp differ by <= 1 ulp, then one float32 op
        np.testing.assert_allclose(got.xyxy, want.xyxy, rtol=box_rtol, atol=1e-4)
    else:
        np.testing.assert_array_equal(got.xyxy, want.xyxy)


# ---------------------------------------------------------------- synthetic heads
def v8_output(n=2100, nc=80, extra=0, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    box = np.concatenate([rng.uniform(0, 640, (2, n)), rng.uniform(1, 200, (2, n))])
    cls = np.round(rng.random((nc, n)) ** 6, 2)  # quantised: many exact ties and exact threshold hits
    ext = rng.normal(size=(extra, n))
    return np.concatenate([box, cls, ext])[None].astype(dtype)


def v5_output(n=3000, nc=80, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0, 640, (n, 2)), rng.uniform(1, 200, (n, 2)),
                        np.round(rng.random((n, 1 + nc)), 2)], 1)
    return p[None].astype(dtype)


def yolox_output(hw=(416, 320), nc=80, seed=0):
    n = sum((hw[0] // s) * (hw[1] // s) for s in (8, 16, 32))
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.normal(0, 1, (n, 4)), rng.random((n, 1 + nc)) ** 2], 1)
    return p[None].astype(np.float32)


@pytest.mark.parametrize("thr", [0.0, 0.25, 0.5])
@pytest.mark.parametrize("extra", [0, 32])
def test_yolov8_matches_reference(thr, extra):
    out = v8_output(extra=extra, seed=int(thr * 100) + extra)
    assert_same(decode(out, "yolov8", score_threshold=thr, num_classes=80), ref_v8(out, thr, nc=80))


def test_yolov8_threshold_strict_and_first_max():
    out = np.zeros((1, 7, 4), np.float32)
    out[0, 4:, 0] = [0.25, 0.25, 0.1]   # == threshold: not a candidate
    out[0, 4:, 1] = [0.3, 0.5, 0.5]     # tie: first max (class 1)
    out[0, 4:, 2] = [0.5, 0.3, 0.3]
    out[0, 4:, 3] = [0.1, 0.2, 0.5]
    c = decode(out, "yolov8")
    assert c.index.tolist() == [1, 2, 3] and c.class_id.tolist() == [1, 0, 2]


@pytest.mark.parametrize("cap", [1, 7, 100])
def test_max_candidates_keeps_highest_with_stable_ties(cap):
    out = v8_output(seed=3)
    assert_same(decode(out, "yolov8", max_candidates=cap), ref_v8(out, cap=cap))


@pytest.mark.parametrize("thr", [0.0, 0.25, 0.9])
def test_yolov5_matches_reference(thr):
    out = v5_output(seed=int(thr * 10))
    assert_same(decode(out, "yolov5", score_threshold=thr), ref_v5(out, thr))


@pytest.mark.parametrize("hw", [(416, 416), (416, 320), (320, 640)])
def test_yolox_matches_demo_postprocess(hw):
    out = yolox_output(hw)
    assert_same(decode(out, "yolox", input_hw=hw, score_threshold=0.2), ref_yolox(out, hw, 0.2), box_rtol=1e-6)


def test_end2end():
    out = np.zeros((1, 5, 6), np.float32)
    out[0, :, :4] = [[0, 0, 10, 10]] * 5
    out[0, :, 4] = [0.9, 0.25, 0.95, 0.9, np.nan]
    out[0, :, 5] = [1, 2, 3, np.nan, 4]
    c = decode(out, "end2end")
    assert c.index.tolist() == [2, 0] and c.class_id.tolist() == [3, 1]
    np.testing.assert_array_equal(c.xyxy, [[0, 0, 10, 10]] * 2)


@pytest.mark.parametrize("head,make", [("yolov8", v8_output), ("yolov5", v5_output)])
def test_float16_equals_widened_float32(head, make):
    out16 = make(dtype=np.float16)
    assert_same(decode(out16, head), decode(out16.astype(np.float32), head))


def test_float16_special_values():
    out = np.zeros((1, 6, 5), np.float16)
    out[0, :4] = 10
    out[0, 4:] = [[np.nan, 0.5, np.inf, 6e-8, 1.0], [0.9, 0.5, 0.1, 0.0, -0.0]]
    c = decode(out, "yolov8", score_threshold=0.0)
    assert c.index.tolist() == [4, 1, 3]  # NaN and +inf rows dropped; subnormal 6e-8 > 0 kept
    assert c.scores[2] == np.float32(np.float16(6e-8))


def test_2d_input_and_non_contiguous_views():
    out = v8_output(seed=5)
    want = ref_v8(out)
    assert_same(decode(out[0], "yolov8"), want)
    padded = np.zeros((1, 84, 2 * out.shape[2]), np.float32)
    padded[..., ::2] = out
    assert_same(decode(padded[..., ::2], "yolov8"), want)
    v5 = v5_output(seed=6)
    assert_same(decode(np.asfortranarray(v5[0]), "yolov5"), ref_v5(v5))


@pytest.mark.parametrize("head,shape", [("yolov8", (1, 84, 0)), ("yolov8", (1, 84, 1)), ("yolov5", (1, 0, 85)),
                                        ("yolox", (1, 1, 85)), ("end2end", (1, 0, 6))])
def test_empty_results_are_typed(head, shape):
    kw = dict(input_hw=(32, 32), strides=(32,)) if head == "yolox" else {}
    c = decode(np.zeros(shape, np.float32), head, **kw)
    assert c.xyxy.shape == (0, 4) and c.xyxy.dtype == np.float32
    assert c.scores.shape == (0,) and c.class_id.dtype == np.int32 and c.index.dtype == np.int32


# ---------------------------------------------------------------- NaN / Inf never make NaN boxes
def test_nan_inf_never_reach_candidates():
    out = v8_output(n=50, nc=3, seed=9)
    out[0, 4:, :] = 0.9
    out[0, 5, 0] = np.nan                 # NaN class score: anchor dropped (torch amax propagates NaN)
    out[0, 0, 1] = np.nan                 # NaN box coordinate: dropped
    out[0, 2, 2] = np.inf                 # infinite width: dropped
    out[0, 3, 3] = -np.inf
    out[0, 6, 4] = np.inf                 # +inf score: dropped
    c = decode(out, "yolov8")
    assert not set(c.index.tolist()) & {0, 1, 2, 3, 4} and len(c.index) == 45
    assert np.isfinite(c.xyxy).all() and np.isfinite(c.scores).all()


def test_nan_objectness_and_yolox_overflow():
    v5 = v5_output(n=10, nc=2, seed=1)
    v5[0, :, 4:] = 0.9
    v5[0, 0, 4] = np.nan
    v5[0, 1, 6] = np.nan
    assert not {0, 1} & set(decode(v5, "yolov5").index.tolist())
    yx = yolox_output((32, 32), nc=2)
    yx[0, :, 4:] = 0.9
    yx[0, 0, 2] = 200.0                   # exp(200) overflows float32: dropped
    yx[0, 1, 0] = np.nan
    c = decode(yx, "yolox", input_hw=(32, 32))
    assert not {0, 1} & set(c.index.tolist()) and np.isfinite(c.xyxy).all()


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("out,head,kw,exc,match", [
    (np.zeros((1, 84, 10), np.float64), "yolov8", {}, EdgerunTypeError, "output: expected dtype float32 or float16, got float64"),
    (np.zeros((1, 84, 10), np.int32), "yolov5", {}, EdgerunTypeError, "got int32"),
    ([[0.0]], "yolov8", {}, EdgerunTypeError, "output: expected a numpy.ndarray, got list"),
    (np.zeros((2, 84, 10), np.float32), "yolov8", {}, EdgerunValueError, r"expected shape \(1, 4\+C\+E, N\) for head 'yolov8'.*got \(2, 84, 10\)"),
    (np.zeros((1, 1, 84, 10), np.float32), "yolov8", {}, EdgerunValueError, r"got \(1, 1, 84, 10\)"),
    (np.zeros((1, 4, 10), np.float32), "yolov8", {}, EdgerunValueError, "needs at least one class score"),
    (np.zeros((1, 8400, 84), np.float32), "yolov8", {}, EdgerunValueError, "channels first.*got \\(1, 8400, 84\\)"),
    (np.zeros((1, 84, 100), np.float32), "yolov8", dict(num_classes=81), EdgerunValueError, "num_classes: expected <= 80.*got 81"),
    (np.zeros((1, 100, 5), np.float32), "yolov5", {}, EdgerunValueError, "needs at least one class score"),
    (np.zeros((3, 100, 85), np.float32), "yolov5", {}, EdgerunValueError, r"expected shape \(1, N, 5\+C\) for head 'yolov5'"),
    (np.zeros((1, 100, 85), np.float32), "yolox", dict(input_hw=(416, 416)), EdgerunValueError, r"expected 3549 anchors.*got shape \(1, 100, 85\)"),
    (np.zeros((1, 3549, 85), np.float32), "yolox", dict(input_hw=416), EdgerunTypeError, "input_hw: expected \\(height, width\\)"),
    (np.zeros((1, 10, 5), np.float32), "end2end", {}, EdgerunValueError, r"expected \(1, K, 6\) for head 'end2end', got \(1, 10, 5\)"),
    (np.zeros((1, 84, 10), np.float32), "yolov9", {}, EdgerunValueError, "head: expected one of yolov8, yolov5, yolox, end2end, dfl, got 'yolov9'"),
    (np.zeros((1, 84, 10), np.float32), "yolov8", dict(score_threshold=-0.1), EdgerunValueError, "score_threshold: expected a finite number"),
    (np.zeros((1, 84, 10), np.float32), "yolov8", dict(score_threshold=float("nan")), EdgerunValueError, "score_threshold"),
    (np.zeros((1, 84, 10), np.float32), "yolov8", dict(max_candidates=0), EdgerunValueError, "max_candidates: expected > 0"),
    (np.zeros((1, 84, 10), np.float32), "yolov8", dict(max_candidates=1.5), EdgerunTypeError, "max_candidates: expected an int"),
])
def test_validation(out, head, kw, exc, match):
    with pytest.raises(exc, match=match):
        decode(out, head, **kw)


# ---------------------------------------------------------------- real models (../shared)
def _need(*names: str) -> None:
    missing = [n for n in names if not (SHARED / n).exists()]
    if missing:
        pytest.skip(f"shared test data not available: {', '.join(str(SHARED / n) for n in missing)}")


def letterbox(img, size, center=True):
    """Plain Ultralytics-style letterbox (cv2.resize INTER_LINEAR, pad 114): returns image and geometry."""
    h, w = img.shape[:2]
    r = min(size / h, size / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    left, top = (int(round((size - nw) / 2 - 0.1)), int(round((size - nh) / 2 - 0.1))) if center else (0, 0)
    out = np.full((size, size, 3), 114, np.uint8)
    out[top:top + nh, left:left + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return out, SimpleNamespace(src_h=h, src_w=w, scale_x=r, scale_y=r, pad_x=left, pad_y=top)


def run_model(name, size, *, rgb=True, unit=True, center=True, dtype=np.float32):
    import onnxruntime as ort
    img = cv2.imread(str(SHARED / "images" / "bus.jpg"))
    lb, geo = letterbox(img, size, center)
    if rgb:
        lb = lb[..., ::-1]
    x = lb.transpose(2, 0, 1)[None].astype(np.float32)
    if unit:
        x /= 255
    sess = ort.InferenceSession(str(SHARED / "models" / name), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.astype(dtype)})[0], geo


def cv2_pipeline(cand: Candidates, iou=0.7, max_det=300):
    xywh = np.concatenate([cand.xyxy[:, :2], cand.xyxy[:, 2:] - cand.xyxy[:, :2]], 1).astype(np.float64)
    keep = np.asarray(cv2.dnn.NMSBoxesBatched(xywh, cand.scores, cand.class_id, 0.0, iou), np.int64)
    return keep.reshape(-1)[:max_det]


def ours(out, head, **kw):
    c = decode(out, head, **kw)
    k = nms(c.xyxy, c.scores, c.class_id, iou_threshold=0.7, max_detections=300)
    return c, k


def box_iou(a, b):
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), 2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], 1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter)


@pytest.mark.parametrize("thr", [0.25, 0.001])
def test_yolov8n_bus_vs_numpy_and_cv2(thr):
    _need("models/yolov8n_640_fp32dq.onnx", "images/bus.jpg")
    out, _ = run_model("yolov8n_640_fp32dq.onnx", 640)
    c, k = ours(out, "yolov8", score_threshold=thr)
    ref = ref_v8(out, thr)
    assert_same(c, ref)
    rk = cv2_pipeline(ref)
    np.testing.assert_array_equal(c.index[k], ref.index[rk])
    np.testing.assert_array_equal(c.xyxy[k], ref.xyxy[rk])


def test_yolov8n_bus_matches_ultralytics_reference():
    _need("models/yolov8n_640_fp32dq.onnx", "images/bus.jpg", "refs/ultralytics_detect.json")
    out, geo = run_model("yolov8n_640_fp32dq.onnx", 640)
    c, k = ours(out, "yolov8")
    boxes = scale_boxes(c.xyxy[k], geo)
    want = np.array(json.loads((SHARED / "refs" / "ultralytics_detect.json").read_text())
                    ["yolov8n_640_fp32dq"]["images/bus.jpg"], np.float64)
    assert len(k) == len(want) == 5
    iou = box_iou(boxes, want[:, :4])
    assert np.all(iou.diagonal() >= 0.95)
    np.testing.assert_array_equal(c.class_id[k], want[:, 5])
    np.testing.assert_allclose(c.scores[k], want[:, 4], atol=0.01)


# Expected on bus.jpg (score 0.25, NMS 0.7): (class, [x1, y1, x2, y2]) in source pixels, +-8 px.
# MANIFEST.md lists these only for yolov8n; yolov5n/yolox values were measured here and cross-checked by
# the numpy + cv2 pipeline in the same test, and are the same objects as Ultralytics' yolov8n reference.
BUS_YOLOV5N = [(0, [50, 399, 206, 898]), (0, [220, 407, 349, 864]), (0, [680, 379, 810, 872]),
               (5, [51, 234, 810, 781])]
BUS_YOLOX = [(5, [13, 231, 801, 735]), (0, [50, 394, 214, 898]), (0, [219, 403, 347, 855]),
             (0, [686, 451, 810, 874]), (0, [0, 560, 82, 882])]


@pytest.mark.parametrize("name,head,size,kw,expected", [
    ("yolov5n_640_fp16.onnx", "yolov5", 640, dict(dtype=np.float16), BUS_YOLOV5N),
    ("yolox_nano_416.onnx", "yolox", 416, dict(rgb=False, unit=False, center=False), BUS_YOLOX),
])
def test_other_heads_on_bus(name, head, size, kw, expected):
    _need("models/" + name, "images/bus.jpg")
    out, geo = run_model(name, size, **kw)
    assert out.dtype == kw.get("dtype", np.float32)
    c, k = ours(out, head, input_hw=(size, size))
    ref = ref_v5(out) if head == "yolov5" else ref_yolox(out, (size, size))
    assert_same(c, ref, box_rtol=1e-6 if head == "yolox" else 0.0)
    np.testing.assert_array_equal(c.index[k], ref.index[cv2_pipeline(ref)])
    boxes = scale_boxes(c.xyxy[k], geo)
    assert c.class_id[k].tolist() == [cls for cls, _ in expected]
    np.testing.assert_allclose(boxes, [b for _, b in expected], atol=8)
