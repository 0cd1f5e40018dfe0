"""gather_keypoints vs a naive numpy gather + Ultralytics scale_coords (float32; exact)."""
from __future__ import annotations

import numpy as np
import pytest

from edgerun.kernels.errors import EdgerunTypeError, EdgerunValueError
from edgerun.kernels.keypoints import gather_keypoints
from edgerun.kernels.preprocess import plan


def _naive(raw, idx, geo, row0, k, d):
    g = raw[row0:row0 + k * d][:, idx].T.reshape(len(idx), k, d).astype(np.float32)
    xy = np.empty((len(idx), k, 2), np.float32)
    xy[..., 0] = ((g[..., 0] - np.float32(geo.pad_x)) / np.float32(geo.scale_x)).clip(0, geo.src_w)
    xy[..., 1] = ((g[..., 1] - np.float32(geo.pad_y)) / np.float32(geo.scale_y)).clip(0, geo.src_h)
    conf = g[..., 2] if d == 3 else np.ones((len(idx), k), np.float32)
    return xy, conf


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_matches_naive(dims, dtype):
    rng = np.random.default_rng(0)
    k, n = 17, 300
    raw = rng.uniform(-50, 700, (1, 5 + k * dims, n)).astype(dtype)
    idx = np.array([3, 299, 0, 3, 17], np.int64)
    geo = plan(1080, 810, 640)
    xy, conf = gather_keypoints(raw, idx, geo, first_row=5, num_keypoints=k, dims=dims)
    ref_xy, ref_conf = _naive(raw[0], idx, geo, 5, k, dims)
    np.testing.assert_allclose(xy, ref_xy, atol=1e-4, rtol=1e-6)
    np.testing.assert_array_equal(conf, ref_conf)
    assert xy.dtype == conf.dtype == np.float32
    assert xy[..., 0].min() >= 0 and xy[..., 0].max() <= 810 and xy[..., 1].max() <= 1080


def test_empty_nan_and_non_contiguous():
    raw = np.full((56, 40), np.nan, np.float32)[:, ::2]
    geo = plan(100, 100, 64)
    xy, conf = gather_keypoints(raw, np.zeros(0, np.int32), geo, first_row=5, num_keypoints=17)
    assert xy.shape == (0, 17, 2) and conf.shape == (0, 17)
    xy, _ = gather_keypoints(raw, np.array([1], np.int32), geo, first_row=5, num_keypoints=17)
    assert (xy == 0).all()  # NaN clipped to 0, like scale_boxes


def test_errors():
    raw = np.zeros((1, 56, 10), np.float32)
    geo = plan(10, 10, 32)
    with pytest.raises(EdgerunValueError, match="first_row"):
        gather_keypoints(raw, np.zeros(1, np.int64), geo, first_row=6, num_keypoints=17)
    with pytest.raises(EdgerunValueError, match=r"index: expected anchor indices in \[0, 10\)"):
        gather_keypoints(raw, np.array([10]), geo, first_row=5, num_keypoints=17)
    with pytest.raises(EdgerunTypeError, match="index: expected dtype"):
        gather_keypoints(raw, np.array([1.0]), geo, first_row=5, num_keypoints=17)
    with pytest.raises(EdgerunValueError, match="dims"):
        gather_keypoints(raw, np.array([1]), geo, first_row=5, num_keypoints=17, dims=4)
