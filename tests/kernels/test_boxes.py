"""scale_boxes vs Ultralytics-style numpy scale_boxes + clip_boxes (float32, exact), inverse of the forward
letterbox mapping (tolerance 1e-3 px), clipping, out= buffers and validation."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerun.kernels import EdgerunTypeError, EdgerunValueError, scale_boxes


def geometry(src_h=1080, src_w=810, size=640):
    """Ultralytics letterbox geometry: gain = min ratio, pad = round(... - 0.1) (Python banker's round)."""
    gain = min(size / src_h, size / src_w)
    pad_x = round((size - src_w * gain) / 2 - 0.1)
    pad_y = round((size - src_h * gain) / 2 - 0.1)
    return SimpleNamespace(src_h=src_h, src_w=src_w, scale_x=gain, scale_y=gain, pad_x=pad_x, pad_y=pad_y)


def ref_scale(xyxy, g, clip=True):
    b = xyxy.astype(np.float32).copy()
    b[:, [0, 2]] -= np.float32(g.pad_x)
    b[:, [1, 3]] -= np.float32(g.pad_y)
    b[:, [0, 2]] /= np.float32(g.scale_x)
    b[:, [1, 3]] /= np.float32(g.scale_y)
    if clip:
        b[:, [0, 2]] = b[:, [0, 2]].clip(0, g.src_w)
        b[:, [1, 3]] = b[:, [1, 3]].clip(0, g.src_h)
    return b


def rand_boxes(n, seed, lo=-50, hi=700):
    rng = np.random.default_rng(seed)
    return rng.uniform(lo, hi, (n, 4)).astype(np.float32)


@pytest.mark.parametrize("n", [0, 1, 17, 1000])
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("src", [(1080, 810), (720, 1280), (1, 1), (333, 777)])
def test_matches_reference(n, clip, src):
    g = geometry(*src)
    b = rand_boxes(n, seed=n)
    got = scale_boxes(b, g, clip=clip)
    assert got.dtype == np.float32 and got.shape == (n, 4)
    np.testing.assert_array_equal(got, ref_scale(b, g, clip))


def test_stretch_geometry_has_separate_scales():
    g = SimpleNamespace(src_h=480, src_w=1280, scale_x=0.5, scale_y=640 / 480, pad_x=0, pad_y=0)
    got = scale_boxes(np.array([[64, 64, 320, 320]], np.float32), g)
    np.testing.assert_allclose(got, [[128, 48, 640, 240]], rtol=1e-6)


@settings(max_examples=50, deadline=None)
@given(src_h=st.integers(1, 3000), src_w=st.integers(1, 3000), size=st.sampled_from([320, 416, 640]),
       seed=st.integers(0, 2**31))
def test_inverts_forward_mapping(src_h, src_w, size, seed):
    g = geometry(src_h, src_w, size)
    rng = np.random.default_rng(seed)
    src = np.sort(rng.uniform(0, 1, (20, 2, 2)), axis=1) * [src_w, src_h]
    src = src.reshape(20, 4).astype(np.float32)  # x1, y1, x2, y2 inside the image
    fwd = src * np.float32(g.scale_x) + np.array([g.pad_x, g.pad_y] * 2, np.float32)
    back = scale_boxes(fwd.astype(np.float32), g)
    np.testing.assert_allclose(back, src, atol=1e-3 + 1e-6 * max(src_h, src_w) / g.scale_x)


def test_clip_edges_and_nan():
    g = SimpleNamespace(src_h=100, src_w=200, scale_x=1.0, scale_y=1.0, pad_x=0, pad_y=0)
    b = np.array([[-5, -1, 250, 150], [np.nan, np.inf, -np.inf, 50]], np.float32)
    np.testing.assert_array_equal(scale_boxes(b, g), [[0, 0, 200, 100], [0, 100, 0, 50]])
    raw = scale_boxes(b, g, clip=False)
    np.testing.assert_array_equal(raw[0], b[0])
    assert np.isnan(raw[1, 0])


def test_out_buffer_and_in_place():
    g = geometry()
    b = rand_boxes(10, seed=1)
    want = ref_scale(b, g)
    out = np.empty((10, 4), np.float32)
    assert scale_boxes(b, g, out=out) is out
    np.testing.assert_array_equal(out, want)
    assert scale_boxes(b, g, out=b) is b
    np.testing.assert_array_equal(b, want)


def test_non_contiguous_input():
    g = geometry()
    b = rand_boxes(10, seed=2)
    wide = np.zeros((10, 8), np.float32)
    wide[:, ::2] = b
    np.testing.assert_array_equal(scale_boxes(wide[:, ::2], g), ref_scale(b, g))


def test_with_preprocess_plan():
    pre = pytest.importorskip("edgerun.kernels.preprocess")
    if not hasattr(pre, "plan"):
        pytest.skip("kernels.preprocess.plan not available yet")
    g = pre.plan(1080, 810, (640, 640))
    b = rand_boxes(50, seed=4)
    np.testing.assert_array_equal(scale_boxes(b, g), ref_scale(b, geometry(1080, 810, 640)))


@pytest.mark.parametrize("xyxy,geo,kw,exc,match", [
    (np.zeros((2, 4), np.float64), None, {}, EdgerunTypeError, "xyxy: expected dtype float32, got float64"),
    (np.zeros((2, 3), np.float32), None, {}, EdgerunValueError, r"xyxy: expected shape \(N, 4\), got \(2, 3\)"),
    (np.zeros(4, np.float32), None, {}, EdgerunValueError, "xyxy: expected 2 dimensions"),
    (np.zeros((2, 4), np.float32), SimpleNamespace(src_h=1, src_w=1), {}, EdgerunTypeError,
     "geometry: expected an object with src_h.*without scale_x, scale_y, pad_x, pad_y"),
    (np.zeros((2, 4), np.float32), SimpleNamespace(src_h=10, src_w=10, scale_x=0, scale_y=1, pad_x=0, pad_y=0),
     {}, EdgerunValueError, "geometry.scale_x: expected > 0, got 0"),
    (np.zeros((2, 4), np.float32), None, dict(out=np.zeros((3, 4), np.float32)), EdgerunValueError,
     r"out: expected shape \(2, 4\), got \(3, 4\)"),
    (np.zeros((2, 4), np.float32), None, dict(out=np.zeros((2, 4), np.float64)), EdgerunTypeError,
     "out: expected dtype float32, got float64"),
    (np.zeros((2, 4), np.float32), None, dict(out=np.zeros((4, 2), np.float32).T), EdgerunValueError,
     "out: must be a C-contiguous writable array"),
])
def test_validation(xyxy, geo, kw, exc, match):
    with pytest.raises(exc, match=match):
        scale_boxes(xyxy, geo if geo is not None else geometry(), **kw)
