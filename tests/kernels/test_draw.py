"""draw_boxes: in place, deterministic class colours, rectangle edges vs cv2.rectangle, labels, validation."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgerun.kernels import EdgerunTypeError, EdgerunValueError, draw_boxes
from edgerun.kernels.draw import class_color


def canvas(h=120, w=160):
    return np.zeros((h, w, 3), np.uint8)


def test_in_place_and_box_edges_have_class_colour():
    img = canvas()
    ret = draw_boxes(img, np.array([[20.2, 60.4, 100.0, 110.0]], np.float32), np.array([3], np.int32),
                     thickness=1)
    assert ret is img
    color = class_color(3)
    assert tuple(img[85, 20]) == color and tuple(img[85, 100]) == color  # left/right edges mid-height
    assert tuple(img[110, 60]) == color                                   # bottom edge
    assert tuple(img[85, 60]) == (0, 0, 0)                                # interior untouched


def test_rectangle_matches_cv2_below_label():
    xyxy = np.array([[30, 50, 120, 100]], np.float32)
    img = draw_boxes(canvas(), xyxy, np.array([1], np.int64), thickness=2)
    ref = canvas()
    cv2.rectangle(ref, (30, 50), (120, 100), class_color(1), 2)
    np.testing.assert_array_equal(img[60:], ref[60:])  # label sits above y1=50; the rest is the rectangle


def test_colours_deterministic_and_distinct():
    colors = [class_color(c) for c in range(80)]
    assert colors == [class_color(c) for c in range(80)]
    assert len(set(colors)) == 80
    assert all(0 <= v <= 255 for c in colors for v in c)


def test_labels_names_and_confidence_change_pixels():
    xyxy = np.array([[40, 40, 150, 110]], np.float32)
    cls = np.array([0], np.int32)
    a = draw_boxes(canvas(), xyxy, cls)
    b = draw_boxes(canvas(), xyxy, cls, np.array([0.87], np.float32), names=["person"])
    c = draw_boxes(canvas(), xyxy, cls, names={0: "person"}, confidence=np.array([0.87], np.float32))
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(b, c)


def test_empty_nonfinite_and_out_of_image_boxes():
    img = canvas()
    draw_boxes(img, np.zeros((0, 4), np.float32), np.zeros(0, np.int32))
    assert not img.any()
    xyxy = np.array([[np.nan, 0, 10, 10], [0, 0, np.inf, 10], [-500, -500, 5000, 5000]], np.float32)
    draw_boxes(img, xyxy, np.array([0, 1, 2], np.int32), names=["a"])  # class 1, 2 without names: ids
    assert img.any()


def test_draws_on_row_padded_view():
    big = np.zeros((120, 200, 3), np.uint8)
    view = big[:, :160]  # rows strided, pixels contiguous: cv2 can draw in place
    draw_boxes(view, np.array([[10, 40, 50, 60]], np.float32), np.array([2], np.int32))
    assert big[:, :160].any() and not big[:, 160:].any()


@pytest.mark.parametrize("image,xyxy,cls,kw,exc,match", [
    (np.zeros((10, 10, 3), np.float32), None, None, {}, EdgerunTypeError, "image: expected dtype uint8, got float32"),
    (np.zeros((10, 10), np.uint8), None, None, {}, EdgerunValueError, "image: expected 3 dimensions"),
    (np.zeros((10, 10, 4), np.uint8), None, None, {}, EdgerunValueError, r"image: expected shape \(H, W, 3\)"),
    (np.zeros((10, 10, 3), np.uint8)[:, ::2], None, None, {}, EdgerunValueError, "image: must be writable"),
    (None, np.zeros((1, 4), np.int32), None, {}, EdgerunTypeError, "xyxy: expected dtype float32 or float64"),
    (None, np.zeros((1, 5), np.float32), None, {}, EdgerunValueError, r"xyxy: expected shape \(N, 4\)"),
    (None, None, np.zeros(2, np.int32), {}, EdgerunValueError, r"class_id: expected shape \(1,\)"),
    (None, None, np.zeros(1, np.float32), {}, EdgerunTypeError, "class_id: expected dtype int32 or int64"),
    (None, None, None, dict(confidence=np.zeros(3, np.float32)), EdgerunValueError, r"confidence: expected shape \(1,\)"),
    (None, None, None, dict(thickness=0), EdgerunValueError, "thickness: expected > 0"),
])
def test_validation(image, xyxy, cls, kw, exc, match):
    image = canvas() if image is None else image
    xyxy = np.zeros((1, 4), np.float32) if xyxy is None else xyxy
    cls = np.zeros(1, np.int32) if cls is None else cls
    with pytest.raises(exc, match=match):
        draw_boxes(image, xyxy, cls, **kw)


def test_read_only_image_rejected():
    img = canvas()
    img.flags.writeable = False
    with pytest.raises(EdgerunValueError, match="image: must be writable"):
        draw_boxes(img, np.zeros((1, 4), np.float32), np.zeros(1, np.int32))
