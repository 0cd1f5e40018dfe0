"""picamera2's buffers straight into ``letterbox`` (RGB888, BGR888, XRGB8888, XBGR8888, YUV420,
YVU420), laid out as picamera2 hands them over, with row padding (stride > width * bytes per pixel),
against OpenCV: cv2.cvtColor of the same bytes, then the cv2.resize + copyMakeBorder chain.

Tolerance: as test_preprocess.py (0 uint8 steps on x86-64, 1 on ARM HAL builds; FLOAT_ATOL on top).
"""
from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
from picamera_buffers import packed, planar  # noqa: E402
from test_preprocess import assert_close, opencv_chain, rand, smooth  # noqa: E402

from edgerun.kernels import EdgerunValueError  # noqa: E402
from edgerun.kernels.preprocess import PICAMERA_FORMATS, letterbox  # noqa: E402


def camera_buffer(fmt: str, h: int, w: int, seed: int = 0, pad: bool = True):
    bgr = smooth(h, w, seed) if min(h, w) >= 8 else rand((h, w, 3), seed)
    return planar(bgr, fmt, seed, pad) if fmt.endswith("420") else packed(bgr, fmt, seed)


@pytest.mark.parametrize("fmt", list(PICAMERA_FORMATS))
@pytest.mark.parametrize("hw", [(480, 640), (240, 320), (360, 500), (2, 2), (18, 26)])
@pytest.mark.parametrize("size", [(640, 640), (320, 320), (97, 131)])
def test_picamera_buffer_matches_opencv(fmt, hw, size):
    array, bgr = camera_buffer(fmt, *hw, seed=hw[0] + size[0])
    assert not array.flags.c_contiguous  # row padding, as picamera2 maps it
    got, g = letterbox(array, size, pixel_format=fmt)
    assert (g.src_h, g.src_w) == hw
    assert_close(got, opencv_chain(bgr, size)[0])


@pytest.mark.parametrize("fmt", list(PICAMERA_FORMATS))
def test_unpadded_and_orders(fmt):
    """Contiguous buffers (stride == width) and BGR tensors / hwc layout take the same path."""
    if fmt.endswith("420"):
        array, bgr = camera_buffer(fmt, 120, 160, seed=3, pad=False)
        assert array.flags.c_contiguous
    else:
        array, bgr = camera_buffer(fmt, 120, 160, seed=3)
        array = np.ascontiguousarray(array)
    assert_close(letterbox(array, 96, pixel_format=fmt)[0], opencv_chain(bgr, 96)[0])
    got = letterbox(array, 96, pixel_format=fmt, channel_order="bgr", layout="hwc")[0]
    want = opencv_chain(bgr, 96)[0][::-1].transpose(1, 2, 0)
    assert_close(got, want)


def test_yuv420_differs_from_i420_on_padded_views():
    """A padded YUV420 view is not an i420 view: its chroma rows are stride // 2 apart."""
    array, bgr = camera_buffer("YUV420", 60, 80, seed=5)
    assert_close(letterbox(array, 64, pixel_format="YUV420")[0], opencv_chain(bgr, 64)[0])
    assert not np.allclose(letterbox(array, 64, pixel_format="i420")[0], opencv_chain(bgr, 64)[0], atol=0.01)


def test_picamera_validation():
    with pytest.raises(EdgerunValueError, match=r"'XRGB8888' expects \(H, W, 4\) uint8, got shape \(4, 4, 3\)"):
        letterbox(np.zeros((4, 4, 3), np.uint8), 8, pixel_format="XRGB8888")
    with pytest.raises(EdgerunValueError, match=r"'RGB888' expects \(H, W, 3\)"):
        letterbox(np.zeros((4, 4, 4), np.uint8), 8, pixel_format="RGB888")
    with pytest.raises(EdgerunValueError, match="even width and height, got 4x5"):
        letterbox(np.zeros((6, 5), np.uint8), 8, pixel_format="YUV420")
    with pytest.raises(EdgerunValueError, match="even row stride"):
        letterbox(np.zeros((6, 11), np.uint8)[:, :4], 8, pixel_format="YUV420")
    with pytest.raises(EdgerunValueError, match=r"\(H\*3//2, stride\)"):
        letterbox(np.zeros((6, 8), np.uint8)[:, ::2], 8, pixel_format="YUV420")
    small = np.zeros((6, 4), np.uint8)  # a view claiming a 64-byte stride over a 24-byte buffer
    hostile = np.lib.stride_tricks.as_strided(small, (6, 4), (64, 1))
    with pytest.raises(EdgerunValueError, match="needs 354 bytes, the buffer holds 24$"):
        letterbox(hostile, 8, pixel_format="YUV420")
