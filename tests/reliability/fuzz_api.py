"""Property tests for every array entry point of the Python API (run in a child by test_api_fuzz.py,
so a segfault fails that test instead of killing the run; not collected on its own).

Arbitrary arrays (dtypes, shapes incl. empty, strided/reversed/transposed/read-only views, NaN/Inf)
must give a correct result or a TypeError/ValueError, never a crash. Profiles: EDGERUN_FUZZ_EXAMPLES.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgerun.kernels import decode, draw_boxes, letterbox, nms, scale_boxes
from edgerun.kernels.preprocess import PIXEL_FORMATS, Geometry, plan

OK = (TypeError, ValueError)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, also when run in a child pytest
from helpers import shared_dir  # noqa: E402

SHARED = shared_dir()
FUZZ = settings(max_examples=int(os.environ.get("EDGERUN_FUZZ_EXAMPLES", "60")), deadline=None,
                derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
WILD = [np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0, -0.0, 1e-40, 0.5, 1.0, 0.9999]


def _mostly(valid: list, invalid: list):
    """Valid values three times out of four: keeps most examples running the kernels."""
    return st.one_of(st.sampled_from(valid), st.sampled_from(valid), st.sampled_from(valid),
                     st.sampled_from(invalid))


def _elements(dtype: np.dtype, pool=WILD):
    if dtype.kind == "f":
        wild = [float(np.asarray(v).astype(dtype)) for v in pool if dtype.itemsize >= 4 or abs(v) < 6e4]
        return st.one_of(st.sampled_from(wild), st.floats(-700, 700, width=min(dtype.itemsize * 8, 64)))
    return None


@st.composite
def views(draw, dtypes, min_dims=1, max_dims=4, max_side=9, shape=None, pool=WILD):
    """An array of a drawn dtype and shape, then maybe a non-contiguous / reversed / read-only view."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    shp = shape if shape is not None else draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims,
                                                                min_side=0, max_side=max_side))
    big = tuple(s * 2 for s in shp)
    arr = draw(hnp.arrays(dtype, big, elements=_elements(dtype, pool)))
    kind = draw(st.sampled_from(["c", "c", "step", "rev", "T", "F", "readonly"]))
    base = arr[tuple(slice(0, s) for s in shp)]
    if kind == "c":
        return np.ascontiguousarray(base)
    if kind == "step":
        return arr[tuple(slice(0, 2 * s, 2) for s in shp)]
    if kind == "rev":
        return base[::-1]
    if kind == "T":
        return base.T
    if kind == "F":
        return np.asfortranarray(base)
    base = np.ascontiguousarray(base)
    base.flags.writeable = False
    return base


IMAGE_DTYPES = [np.uint8] * 12 + [np.int8, np.uint16, np.float32, np.bool_]


@st.composite
def images(draw):
    """Mostly plausible frames for the drawn pixel format, sometimes anything."""
    fmt = draw(st.sampled_from(PIXEL_FORMATS + ("bgra",)))
    h, w = draw(_mostly(list(range(1, 13)), [0])), draw(_mostly(list(range(1, 13)), [0]))
    shapes = {"gray": (h, w), "yuyv": (h, w, 2), "nv12": (h * 3 // 2, w), "nv21": (h * 3 // 2, w),
              "i420": (h * 3 // 2, w), "YUV420": (h * 3 // 2, w), "YVU420": (h * 3 // 2, w),
              "XRGB8888": (h, w, 4), "XBGR8888": (h, w, 4)}
    shape = shapes.get(fmt, (h, w, 3))
    if draw(st.integers(0, 9)) == 0:
        return fmt, draw(views(IMAGE_DTYPES, max_side=6))
    return fmt, draw(views(IMAGE_DTYPES, shape=shape))


def _out_for(kind: str, shape: tuple, dtype) -> np.ndarray | None:
    if kind == "none":
        return None
    if kind == "wrong_shape":
        return np.empty(shape[:-1] + (shape[-1] + 1,), dtype)
    if kind == "wrong_dtype":
        return np.empty(shape, np.float64)
    if kind == "noncontig":
        return np.empty(shape[:-1] + (shape[-1] * 2,), dtype)[..., ::2]
    out = np.full(shape, 7, dtype)
    out.flags.writeable = kind != "readonly"
    return out


@FUZZ
@given(images(), st.one_of(st.integers(1, 40), st.tuples(st.integers(1, 40), st.integers(1, 40)),
                           st.sampled_from([0, -1, (0, 5), (3, 3, 3)])),
       _mostly(["letterbox", "rect", "stretch", "center_crop"], ["nope"]),
       st.sampled_from(["chw", "hwc"]), _mostly([np.float32, np.float16], [np.float64]),
       _mostly(["none", "ok"], ["wrong_shape", "wrong_dtype", "noncontig", "readonly"]),
       st.sampled_from(["center", "top_left"]))
def test_letterbox(img, size, mode, layout, dtype, out_kind, pad_position):
    fmt, image = img
    kw = dict(pixel_format=fmt, mode=mode, layout=layout, dtype=dtype, pad_position=pad_position)
    try:
        geo = plan(*_hw(image, fmt), size, mode=mode, pad_position=pad_position)
        shape = (3, geo.dst_h, geo.dst_w) if layout == "chw" else (geo.dst_h, geo.dst_w, 3)
        out = _out_for(out_kind, shape, dtype)
        tensor, geo = letterbox(image, size, out=out, **kw)
    except OK as exc:
        return event(f"refused: {type(exc).__name__}: {str(exc)[:40]}")
    event("computed")
    assert out is None or tensor is out
    assert tensor.shape == shape and tensor.dtype == np.dtype(dtype)
    assert np.isfinite(tensor.astype(np.float32)).all()
    again, _ = letterbox(np.ascontiguousarray(image), size, **kw)  # views give the contiguous result
    np.testing.assert_array_equal(again, tensor)


def _hw(image: np.ndarray, fmt: str) -> tuple[int, int]:
    if not isinstance(image, np.ndarray) or image.ndim < 2:
        raise ValueError("not an image")
    h = image.shape[0] * 2 // 3 if fmt in ("nv12", "nv21", "i420", "YUV420", "YVU420") else image.shape[0]
    return h, image.shape[1]


FLOATS = [np.float32] * 4 + [np.float16] * 2 + [np.float64, np.int32]
HEADS = ["yolov8", "yolov5", "yolox", "end2end", "dfl", "ssd"]
HEAD_SHAPES = {"yolov8": (1, 7, 21), "yolov5": (1, 21, 7), "yolox": (1, 21, 7), "end2end": (1, 9, 6),
               "dfl": (1, 66, 21)}


@st.composite
def head_outputs(draw):
    head = draw(st.sampled_from(HEADS))
    if head in HEAD_SHAPES and draw(st.integers(0, 3)) > 0:
        return head, draw(views(FLOATS, shape=HEAD_SHAPES[head]))
    return head, draw(views(FLOATS, max_dims=4, max_side=8))


@FUZZ
@given(head_outputs(), _mostly([0.0, 0.25, 0.5, 1.0], [-1.0, float("nan"), 2.0]),
       _mostly([None, 1, 2], [0, -1, 1000]), _mostly([1, 5, 30000], [0, -3]))
def test_decode(head_out, thr, num_classes, cap):
    head, out = head_out
    try:
        cand = decode(out, head, score_threshold=thr, num_classes=num_classes, max_candidates=cap,
                      input_hw=(32, 32), strides=(8, 16, 32))
    except OK as exc:
        return event(f"refused: {type(exc).__name__}: {str(exc)[:40]}")
    event("computed")
    k = len(cand.scores)
    assert cand.xyxy.shape == (k, 4) and cand.xyxy.dtype == np.float32
    assert cand.class_id.shape == cand.index.shape == (k,) and k <= cap
    assert np.isfinite(cand.xyxy).all() and np.isfinite(cand.scores).all()
    assert (cand.scores > thr).all() and (cand.scores[:-1] >= cand.scores[1:]).all()
    if head != "end2end":  # end2end passes the model's class column through (e.g. -1 padding rows)
        assert (cand.class_id >= 0).all() and (cand.class_id < (num_classes or 10**9)).all()


@st.composite
def boxes_scores(draw):
    n = draw(st.integers(0, 12))
    xyxy = draw(views([np.float32] * 9 + [np.float64, np.float16], shape=(n, 4), pool=WILD))
    if draw(st.integers(0, 9)) == 0:
        xyxy = draw(views([np.float32], max_dims=3, max_side=5))
    scores = draw(views([np.float32] * 9 + [np.float64], shape=(draw(_mostly([n], [n + 1])),)))
    cls = draw(st.one_of(st.none(), views([np.int32, np.int64] * 4 + [np.int8, np.uint64, np.float32],
                                          shape=(n,))))
    return xyxy, scores, cls


@FUZZ
@given(boxes_scores(), _mostly([0.0, 0.45, 0.7, 1.0], [float("nan"), -0.1]),
       _mostly([1, 3, 300], [0, -1]), st.booleans())
def test_nms(data, iou, max_det, agnostic):
    xyxy, scores, cls = data
    try:
        keep = nms(xyxy, scores, cls, iou_threshold=iou, max_detections=max_det, class_agnostic=agnostic)
    except OK as exc:
        return event(f"refused: {type(exc).__name__}: {str(exc)[:40]}")
    event("computed")
    assert keep.dtype == np.int64 and keep.ndim == 1 and len(keep) <= max_det
    assert len(np.unique(keep)) == len(keep) and ((keep >= 0) & (keep < len(scores))).all()
    kept = scores[keep]
    assert not np.isnan(kept).any() and (kept[:-1] >= kept[1:]).all()


@st.composite
def geometries(draw):
    if draw(st.booleans()):
        return plan(draw(st.integers(1, 50)), draw(st.integers(1, 50)), draw(st.integers(1, 64)),
                    mode=draw(st.sampled_from(["letterbox", "stretch", "center_crop", "rect"])))
    vals = st.sampled_from([0.0, -1.0, float("nan"), float("inf"), 1.0, 3.5, 640.0, 1e30])
    return Geometry(*(draw(vals) for _ in range(8)), 1, 1, 0, 0)


@FUZZ
@given(st.one_of(views([np.float32] * 6 + [np.float64], shape=(3, 4), pool=WILD),
                 views([np.float32], max_dims=3, max_side=6)), geometries(), st.booleans(),
       _mostly(["none", "alias", "ok"], ["wrong_shape", "wrong_dtype", "noncontig", "readonly"]))
def test_scale_boxes(xyxy, geo, clip, out_kind):
    try:
        out = xyxy if out_kind == "alias" else _out_for(out_kind, xyxy.shape, np.float32)
        res = scale_boxes(xyxy, geo, clip=clip, out=out)
    except OK as exc:
        return event(f"refused: {type(exc).__name__}: {str(exc)[:40]}")
    event("computed")
    assert res.shape == xyxy.shape and res.dtype == np.float32
    if clip:
        assert not np.isnan(res).any()
        assert (res[:, 0::2] >= 0).all() and (res[:, 0::2] <= np.float32(geo.src_w)).all()
        assert (res[:, 1::2] >= 0).all() and (res[:, 1::2] <= np.float32(geo.src_h)).all()


@FUZZ
@given(st.one_of(views([np.uint8] * 9 + [np.float32], shape=(9, 13, 3)),
                 views([np.uint8], max_dims=3, max_side=20)), boxes_scores(),
       _mostly([1, 2, 7], [0, -1]), st.sampled_from([None, ("a", "b"), {0: "zero"}]))
def test_draw_boxes(image, data, thickness, names):
    xyxy, scores, cls = data
    if cls is None:
        cls = np.zeros(len(xyxy), np.int64)
    try:
        res = draw_boxes(image, xyxy, cls, scores, names, thickness=thickness)
    except OK as exc:
        return event(f"refused: {type(exc).__name__}: {str(exc)[:40]}")
    event("computed")
    assert res is image


@pytest.fixture(scope="module")
def detector():
    from edgerun.runtime import Detector

    model = SHARED / "models" / "yolov8n_320_int8dyn.onnx"
    if not model.exists():
        pytest.skip(f"{model} absent")
    return Detector.from_path(str(model))


@FUZZ
@given(images())
def test_detect(detector, img):
    fmt, image = img
    try:
        det = detector.detect(image, fmt)
    except OK as exc:
        return event(f"refused: {type(exc).__name__}: {str(exc)[:40]}")
    event("computed")
    h, w = det.image_shape
    assert np.isfinite(det.xyxy).all() and np.isfinite(det.confidence).all()
    assert (det.xyxy[:, 0::2] >= 0).all() and (det.xyxy[:, 0::2] <= w).all()
    assert (det.xyxy[:, 1::2] >= 0).all() and (det.xyxy[:, 1::2] <= h).all()


@FUZZ
@given(st.data())
def test_absurd_model_outputs_never_give_nan_or_outside_boxes(detector, data):
    """Raw outputs full of NaN/Inf/1e30 through the whole postprocess: finite boxes inside the image."""
    shape = detector.session.outputs[0].shape
    out = data.draw(hnp.arrays(np.float32, shape, elements=st.sampled_from(WILD + [-5.0, 50.0, 400.0])))
    src_h, src_w = data.draw(st.integers(1, 2000)), data.draw(st.integers(1, 2000))
    geo = detector.plan(src_h, src_w)
    det = detector.postprocess([out], geo)
    assert np.isfinite(det.xyxy).all() and np.isfinite(det.confidence).all()
    assert (det.xyxy[:, 0::2] >= 0).all() and (det.xyxy[:, 0::2] <= src_w).all()
    assert (det.xyxy[:, 1::2] >= 0).all() and (det.xyxy[:, 1::2] <= src_h).all()
