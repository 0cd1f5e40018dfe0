"""softmax / topk / argmax_map vs naive numpy (exact ranking; softmax atol 1e-7)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgerun.kernels.errors import EdgerunTypeError, EdgerunValueError
from edgerun.kernels.topk import argmax_map, softmax, topk


def _np_softmax(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def test_softmax_matches_numpy():
    x = np.random.default_rng(0).normal(0, 5, (7, 1000)).astype(np.float32)
    np.testing.assert_allclose(softmax(x), _np_softmax(x), atol=1e-7, rtol=1e-6)
    assert softmax(x).dtype == np.float32


def test_softmax_1d_large_values_and_out_buffer():
    x = np.array([1000.0, 1000.0, -1000.0], np.float32)
    out = np.empty(3, np.float32)
    assert softmax(x, out=out) is out
    np.testing.assert_allclose(out, [0.5, 0.5, 0.0], atol=1e-7)


def test_softmax_nan_row_is_nan():
    assert np.isnan(softmax(np.array([1.0, np.nan], np.float32))).all()


@pytest.mark.parametrize("k", [1, 3, 5, 10])
def test_topk_matches_stable_argsort(k):
    rng = np.random.default_rng(1)
    x = rng.integers(-5, 5, (20, 50)).astype(np.float32)  # many exact ties
    idx, val = topk(x, k)
    ref = np.argsort(-x, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_array_equal(val, np.take_along_axis(x, ref, 1))
    assert idx.dtype == np.int64 and val.dtype == np.float32


def test_topk_ties_by_class_index_and_k_capped():
    idx, val = topk(np.array([1.0, 3.0, 3.0, 2.0], np.float32), 10)
    assert idx.tolist() == [1, 2, 3, 0] and val.tolist() == [3.0, 3.0, 2.0, 1.0]


def test_topk_nan_ranks_last_and_non_contiguous():
    x = np.array([[np.nan, 1.0, 0.5, np.nan, 2.0]] * 2, np.float32)[:, ::-1]
    idx, _ = topk(x, 5)
    assert idx[0].tolist() == [0, 3, 2, 1, 4]


def test_topk_single_class():
    idx, val = topk(np.array([[0.3]], np.float32), 5)
    assert idx.shape == (1, 1) and val[0, 0] == np.float32(0.3)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 30)),
                  elements=st.floats(-10, 10, width=32)), st.integers(1, 8))
def test_topk_property(x, k):
    idx, val = topk(x, k)
    ref = np.argsort(-x, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(idx, ref)


def test_errors_name_the_argument():
    with pytest.raises(EdgerunTypeError, match="scores: expected dtype float32"):
        topk(np.zeros((2, 3)), 1)
    with pytest.raises(EdgerunValueError, match="k: expected > 0"):
        topk(np.zeros((2, 3), np.float32), 0)
    with pytest.raises(EdgerunValueError, match="logits: expected at least one class"):
        softmax(np.zeros((2, 0), np.float32))
    with pytest.raises(EdgerunValueError, match="out: expected shape"):
        softmax(np.zeros((2, 3), np.float32), out=np.empty((3, 2), np.float32))


def test_argmax_map_matches_numpy_first_max():
    x = np.random.default_rng(2).integers(0, 3, (9, 11, 21)).astype(np.float32)
    np.testing.assert_array_equal(argmax_map(x), x.argmax(-1).astype(np.uint8))
    x[0, 0, :] = np.nan
    x[0, 0, 5] = 1.0
    assert argmax_map(x)[0, 0] == 5


def test_argmax_map_rejects_too_many_classes():
    with pytest.raises(EdgerunValueError, match="1..256 classes"):
        argmax_map(np.zeros((2, 2, 300), np.float32))
