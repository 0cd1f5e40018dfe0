"""Annotation helpers: they draw where asked, leave the rest, and reject bad shapes."""
from __future__ import annotations

import numpy as np
import pytest

from edgerun.kernels.annotate import draw_keypoints, draw_label_map, draw_landmarks, draw_masks, draw_text_lines
from edgerun.kernels.errors import EdgerunValueError


def test_masks_blend_only_inside():
    img = np.full((20, 30, 3), 100, np.uint8)
    m = np.zeros((1, 20, 30), bool)
    m[0, 5:10, 5:10] = True
    draw_masks(img, m, np.array([3]))
    assert (img[5:10, 5:10] != 100).any() and (img[~m[0]] == 100).all()
    with pytest.raises(EdgerunValueError, match="masks: expected"):
        draw_masks(img, m[:, :10], np.array([3]))


def test_keypoints_skip_low_confidence_and_nan():
    img = np.zeros((50, 50, 3), np.uint8)
    kp = np.array([[[10, 10], [40, 40], [np.nan, 5]]], np.float32)
    draw_keypoints(img, kp, np.array([[0.9, 0.1, 0.9]], np.float32), [(0, 1)])
    assert img[10, 10].any() and not img[40, 40].any()
    draw_landmarks(img, kp[:, 1:2].copy())
    assert img[40, 40].any()


def test_label_map_and_text():
    img = np.zeros((8, 8, 3), np.uint8)
    lm = np.zeros((8, 8), np.uint8)
    lm[:4] = 8
    draw_label_map(img, lm)
    assert img[:4].any() and not img[4:].any()
    draw_text_lines(np.zeros((40, 200, 3), np.uint8), ["cat 0.9"])
