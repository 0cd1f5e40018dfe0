"""Regression tests for bugs the reliability suite found in the kernels and the spec inference."""
from __future__ import annotations

import numpy as np
import pytest

from edgerun.kernels import draw_boxes, nms


def test_nms_denormal_boxes_do_not_divide_by_zero():
    xyxy = np.full((2, 4), 5e-41, np.float32)
    xyxy[:, 2:] = 1.5e-40  # w, h > 0 but w*h underflows: area 0, inter 0, union 0
    keep = nms(xyxy, np.array([0.5, 0.5], np.float32), np.array([6, 6], np.int32))
    np.testing.assert_array_equal(keep, [0, 1])  # torchvision: 0/0 = NaN never suppresses


def test_draw_boxes_refuses_absurd_thickness():
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="thickness"):
        draw_boxes(image, np.array([[1, 1, 5, 5]], np.float32), np.zeros(1, np.int64), thickness=100_000)


@pytest.mark.parametrize("out_shape", [(1, 2, 256), (1, 256, 3)])
def test_spec_never_guesses_a_negative_class_count(out_shape):
    from edgerun.kernels.errors import EdgerunError
    from edgerun.runtime.session import TensorInfo
    from edgerun.runtime.spec import resolve_spec

    inputs = [TensorInfo("images", (1, 3, 128, 128), np.float32)]
    try:
        spec = resolve_spec({}, inputs, [TensorInfo("output0", out_shape, np.float32)])
    except EdgerunError:
        return  # refusing is fine too
    assert spec.num_classes >= 1, spec.num_classes
