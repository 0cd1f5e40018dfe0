"""letterbox / plan vs OpenCV (cv2.resize INTER_LINEAR + copyMakeBorder + cvtColor + transpose + scale)
and vs Ultralytics' LetterBox / scale_boxes arithmetic transcribed from the README's
"Fidelity with Ultralytics" (Design notes).

Tolerance: cv2 resizes uint8 with 11-bit fixed-point weights and rounds to uint8; letterbox emulates
that arithmetic (and cvtColor's BT.601 integer formula), so the measured max difference is 0 uint8
steps (OpenCV 5.0.0, x86-64). HAL builds (e.g. Carotene on ARM) may round differently: 1 step there.
Float tensors are compared with FLOAT_ATOL on top (normalisation computed in float64 vs float32).
"""
from __future__ import annotations

import os
import platform

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
from helpers import shared_dir  # noqa: E402
from hypothesis import given, settings, strategies as st  # noqa: E402

from edgerun.kernels import EdgerunTypeError, EdgerunValueError  # noqa: E402
from edgerun.kernels.preprocess import Geometry, letterbox, plan  # noqa: E402

TOL_U8 = 0 if platform.machine().lower() in ("x86_64", "amd64") else 1
FLOAT_ATOL = 1e-6
IMAGES = str(shared_dir() / "images")
YUV_CODES = {"nv12": cv2.COLOR_YUV2BGR_NV12, "nv21": cv2.COLOR_YUV2BGR_NV21,
             "i420": cv2.COLOR_YUV2BGR_I420, "yuyv": cv2.COLOR_YUV2BGR_YUY2}


def rand(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def smooth(h, w, seed=0):
    """Camera-like content (random noise hides nothing, but smooth images catch offset bugs)."""
    return cv2.GaussianBlur(rand((h, w, 3), seed), (7, 7), 0)


# ------------------------------------------------------------------------------ references
def ultralytics_letterbox(img, new_shape=(640, 640), auto=False, stride=32, center=True):
    """Ultralytics LetterBox.__call__ (scaleup=True), per the README's fidelity notes; BGR uint8."""
    shape = img.shape[:2]
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    new_unpad = int(round(shape[1] * r)), int(round(shape[0] * r))
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    if auto:
        dw, dh = np.mod(dw, stride), np.mod(dh, stride)
    if center:
        dw /= 2
        dh /= 2
    if shape[::-1] != new_unpad:
        img = cv2.resize(img, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)) if center else 0, int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)) if center else 0, int(round(dw + 0.1))
    return cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))


def ultralytics_gain_pad(img1_shape, img0_shape):
    """Ultralytics 8.4.190 scale_boxes (ratio_pad=None, padding=True): the padding of the rounded
    resize and per-axis gains of the rounded resized size (checked against its own boxes in
    tests/runtime/tasks/test_fidelity.py: <= 0.0005 px on non-square images)."""
    gain = min(img1_shape[0] / img0_shape[0], img1_shape[1] / img0_shape[1])
    new_w, new_h = max(1, round(img0_shape[1] * gain)), max(1, round(img0_shape[0] * gain))
    pad_x = round((img1_shape[1] - new_w) / 2 - 0.1)
    pad_y = round((img1_shape[0] - new_h) / 2 - 0.1)
    return (new_w / img0_shape[1], new_h / img0_shape[0]), pad_x, pad_y


def place(bgr, g: Geometry, pad=114):
    """OpenCV reference: cv2.resize to (new_w, new_h), then place at (top, left) on a padded canvas."""
    r = cv2.resize(bgr, (g.new_w, g.new_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((g.dst_h, g.dst_w, 3), pad, np.uint8)
    y0, x0 = max(0, g.top), max(0, g.left)
    y1, x1 = min(g.dst_h, g.top + g.new_h), min(g.dst_w, g.left + g.new_w)
    if y1 > y0 and x1 > x0:
        canvas[y0:y1, x0:x1] = r[y0 - g.top:y1 - g.top, x0 - g.left:x1 - g.left]
    return canvas


def to_tensor(bgr_u8, scale=1 / 255, mean=(0, 0, 0), std=(1, 1, 1), order="rgb", layout="chw"):
    x = cv2.cvtColor(bgr_u8, cv2.COLOR_BGR2RGB) if order == "rgb" else bgr_u8
    x = (x.astype(np.float64) * scale - np.array(mean)) / np.array(std)
    return np.ascontiguousarray(x.transpose(2, 0, 1) if layout == "chw" else x).astype(np.float32)


def assert_close(got, want, scale=1 / 255, std=1.0):
    assert got.shape == want.shape and got.dtype == want.dtype
    tol = TOL_U8 * abs(scale) / np.min(np.abs(std)) + FLOAT_ATOL
    diff = np.abs(got.astype(np.float64) - want)
    assert diff.max() <= tol, f"max diff {diff.max()} > {tol} at {np.unravel_index(diff.argmax(), diff.shape)}"


def opencv_chain(bgr, size=(640, 640), **kw):
    """The OpenCV chain the benchmark compares against: resize + copyMakeBorder + cvtColor + transpose + /255."""
    g = plan(bgr.shape[0], bgr.shape[1], size, **kw)
    return to_tensor(place(bgr, g)), g


# ------------------------------------------------------------------------------ pixels: BGR
SRC_SIZES = [(1080, 1920), (720, 1280), (810, 1080), (480, 640), (17, 23), (1, 1), (3, 1000), (1000, 3),
             (2, 2), (641, 639)]


@pytest.mark.parametrize("hw", SRC_SIZES)
@pytest.mark.parametrize("size", [(640, 640), (320, 320), (384, 640), (97, 131)])
def test_bgr_matches_opencv_chain(hw, size):
    img = rand(hw + (3,), seed=hw[0] * 7 + size[1])
    got, g = letterbox(img, size)
    want, g2 = opencv_chain(img, size)
    assert g == g2
    assert_close(got, want)


@pytest.mark.parametrize("hw", [(1080, 1920), (810, 1080), (33, 47)])
def test_matches_ultralytics_letterbox(hw):
    img = smooth(*hw, seed=3)
    for auto, mode in ((False, "letterbox"), (True, "rect")):
        for center, pos in ((True, "center"), (False, "top_left")):
            want = to_tensor(ultralytics_letterbox(img, (640, 640), auto=auto, center=center))
            got, g = letterbox(img, 640, mode=mode, pad_position=pos)
            assert_close(got, want)


def test_real_images():
    if not os.path.isdir(IMAGES):
        pytest.skip(f"shared images not found at {IMAGES}")
    names = sorted(n for n in os.listdir(IMAGES) if n.endswith((".jpg", ".png")))
    assert names, "no images in shared/images"
    for name in names:
        img = cv2.imread(os.path.join(IMAGES, name), cv2.IMREAD_COLOR)
        for size, mode in (((640, 640), "letterbox"), ((640, 640), "rect"), ((320, 320), "letterbox")):
            got, _ = letterbox(img, size, mode=mode)
            assert_close(got, to_tensor(ultralytics_letterbox(img, size, auto=mode == "rect")))
        g = plan(*img.shape[:2], 224, mode="center_crop", resize_short=256)
        got, _ = letterbox(img, 224, mode="center_crop", resize_short=256)
        assert_close(got, to_tensor(place(img, g)))


@pytest.mark.parametrize("kw", [
    dict(mode="stretch"), dict(mode="center_crop"), dict(mode="center_crop", resize_short=256),
    dict(mode="center_crop", resize_short=100), dict(mode="rect", stride=64), dict(pad_position="top_left"),
    dict(mode="rect", pad_position="top_left"),
])
def test_modes_vs_opencv(kw):
    img = smooth(375, 500, seed=5)
    size = (224, 224) if kw.get("mode") == "center_crop" else (320, 416)
    got, g = letterbox(img, size, **kw)
    assert_close(got, to_tensor(place(img, g)))


@pytest.mark.parametrize("order", ["rgb", "bgr"])
@pytest.mark.parametrize("layout", ["chw", "hwc"])
def test_normalisation_order_layout(order, layout):
    img = smooth(120, 90, seed=6)
    mean, std, scale = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1 / 255
    got, g = letterbox(img, (64, 80), channel_order=order, layout=layout, mean=mean, std=std, pad_value=0)
    want = to_tensor(place(img, g, pad=0), scale, mean, std, order, layout)
    assert_close(got, want, scale, np.array(std))


def test_pad_value_and_raw_scale():
    img = rand((10, 40, 3), seed=7)
    got, g = letterbox(img, 40, scale=1.0, pad_value=0, channel_order="bgr")  # YOLOX / YuNet style
    assert_close(got, to_tensor(place(img, g, pad=0), 1.0, order="bgr"), 1.0)
    got, g = letterbox(img, 40, pad_value=17.5, mean=0.5, std=2.0)
    assert np.all(got[:, 0, :] == np.float32((17.5 / 255 - 0.5) / 2.0))


def test_float16_is_float32_cast():
    img = rand((77, 131, 3), seed=8)
    for kw in (dict(), dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)), dict(scale=1.0)):
        f32, _ = letterbox(img, 96, **kw)
        f16, _ = letterbox(img, 96, dtype=np.float16, **kw)
        assert f16.dtype == np.float16
        np.testing.assert_array_equal(f16.view(np.uint16), f32.astype(np.float16).view(np.uint16))
    f16, _ = letterbox(rand((8, 8, 2), 9), 16, pixel_format="yuyv", dtype="float16", layout="hwc")
    f32, _ = letterbox(rand((8, 8, 2), 9), 16, pixel_format="yuyv", layout="hwc")
    np.testing.assert_array_equal(f16, f32.astype(np.float16))


def test_non_contiguous_inputs():
    big = smooth(400, 600, seed=10)
    for view in (big[::2, ::3], big[50:350:3, 600:0:-2], big[10:300, 20:500]):
        assert_close(letterbox(view, 128)[0], opencv_chain(np.ascontiguousarray(view), (128, 128))[0])
    rgb = big[..., ::-1]  # RGB view of a BGR buffer
    np.testing.assert_array_equal(letterbox(rgb, 128, pixel_format="rgb")[0], letterbox(big, 128)[0])
    t = np.ascontiguousarray(big.transpose(1, 0, 2)).transpose(1, 0, 2)  # column-major-ish strides
    np.testing.assert_array_equal(letterbox(t, 128)[0], letterbox(big, 128)[0])


@pytest.mark.parametrize("kw", [dict(), dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
                                dict(channel_order="bgr", scale=1.0, pad_value=0), dict(dtype=np.float16),
                                dict(mode="center_crop", resize_short=150), dict(mode="rect"),
                                dict(mode="stretch", pad_position="top_left")])
@pytest.mark.parametrize("hw", [(810, 1080), (360, 640), (320, 240), (97, 131)])
def test_packed_path_equals_one_pass_kernels(kw, hw):
    """Packed BGR frames go through cv2.resize + pack_kernel; other layouts through the one-pass
    kernels: the two must give the same tensor bit for bit (sizes: non-integer, exact 2x, identity)."""
    img = smooth(*hw, seed=hw[0])
    one_pass = np.ascontiguousarray(img.transpose(1, 0, 2)).transpose(1, 0, 2)  # not packed: one-pass path
    size = (128, 128) if kw.get("mode") == "center_crop" else (320, 320)
    a, ga = letterbox(img, size, **kw)
    b, gb = letterbox(one_pass, size, **kw)
    assert ga == gb and a.dtype == b.dtype
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


def test_opencv_paths_only_where_opencv_is_exact(monkeypatch):
    """OpenCV resamples/converts only when its digest is the x86-64 reference (it is with the wheels CI
    installs on x86-64); when it is not, every frame takes edgerun's kernels and gives the same tensor."""
    import platform

    from edgerun.kernels import preprocess

    assert preprocess.opencv_exact() == (preprocess.opencv_digest() == preprocess._OPENCV_REFERENCE)
    if platform.machine() in ("x86_64", "AMD64"):
        assert preprocess.opencv_exact(), f"OpenCV {cv2.__version__} on x86-64 no longer matches the reference"
    img, nv12 = smooth(810, 1080, seed=4), rand((540, 640), seed=5)
    fast = [letterbox(img, 640)[0], letterbox(nv12, 320, pixel_format="nv12")[0]]
    calls = []
    monkeypatch.setattr(preprocess, "opencv_exact", lambda: False)
    monkeypatch.setattr(preprocess.cv2, "resize", lambda *a, **k: calls.append(a))
    slow = [letterbox(img, 640)[0], letterbox(nv12, 320, pixel_format="nv12")[0]]
    assert not calls
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)


def test_pack_tables_compute_only_when_exact():
    from edgerun.kernels.preprocess import _tables  # noqa: the table/arith decision itself
    assert _tables(1 / 255, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 114.0, False)[2]  # /255: computed
    assert not _tables(1 / 255, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 114.0, True)[2]  # float16: table


def test_out_buffer_reused():
    batch = np.zeros((2, 3, 64, 64), np.float32)
    img = rand((48, 64, 3), seed=11)
    res, _ = letterbox(img, 64, out=batch[1])
    assert res is not None and np.shares_memory(res, batch[1])
    np.testing.assert_array_equal(batch[1], letterbox(img, 64)[0])
    assert not batch[0].any()
    hwc = np.empty((64, 64, 3), np.float16)
    assert letterbox(img, 64, out=hwc, layout="hwc", dtype=np.float16)[0] is hwc


# --------------------------------------------------------------------------- pixels: camera
@pytest.mark.parametrize("fmt", ["nv12", "nv21", "i420", "yuyv"])
@pytest.mark.parametrize("hw", [(1080, 1920), (810, 1080), (480, 640), (2, 2), (18, 26), (642, 640)])
@pytest.mark.parametrize("size", [(640, 640), (320, 320), (97, 131)])
def test_yuv_matches_cvtcolor_chain(fmt, hw, size):
    h, w = hw
    buf = rand((h, w, 2) if fmt == "yuyv" else (h * 3 // 2, w), seed=h + w + size[0])
    bgr = cv2.cvtColor(buf, YUV_CODES[fmt])
    got, g = letterbox(buf, size, pixel_format=fmt)
    assert (g.src_h, g.src_w) == hw
    assert_close(got, opencv_chain(bgr, size)[0])


@pytest.mark.parametrize("fmt", ["nv12", "i420", "yuyv"])
@pytest.mark.parametrize("kw", [dict(), dict(channel_order="bgr"), dict(dtype=np.float16),
                                dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
                                dict(mode="rect"), dict(mode="center_crop", resize_short=200)])
def test_yuv_decimation_equals_converted_frame(fmt, kw):
    """1080p -> 640 (every tensor pixel one source pixel: the decimation kernel) equals the BGR frame
    cv2.cvtColor makes of the same buffer, through the BGR path, bit for bit."""
    buf = rand((1080, 1920, 2) if fmt == "yuyv" else (1620, 1920), seed=21)
    size = (180, 180) if kw.get("mode") == "center_crop" else (640, 640)
    got, g = letterbox(buf, size, pixel_format=fmt, **kw)
    want, g2 = letterbox(cv2.cvtColor(buf, YUV_CODES[fmt]), size, **kw)
    assert g == g2
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


def test_yuv_from_real_frame_and_views():
    bgr = smooth(360, 480, seed=12)
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    got, _ = letterbox(i420, 224, pixel_format="i420", mode="stretch")
    want = to_tensor(place(cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420), plan(360, 480, 224, mode="stretch")))
    assert_close(got, want)
    nv12 = rand((360 * 3 // 2, 480), seed=13)
    padded = np.zeros((540, 512), np.uint8)  # a driver buffer with row padding (stride 512)
    padded[:, :480] = nv12
    np.testing.assert_array_equal(letterbox(padded[:, :480], 160, pixel_format="nv12")[0],
                                  letterbox(nv12, 160, pixel_format="nv12")[0])
    non_contig_i420 = np.zeros((540, 512), np.uint8)
    non_contig_i420[:, :480] = i420
    np.testing.assert_array_equal(letterbox(non_contig_i420[:, :480], 224, pixel_format="i420",
                                            mode="stretch")[0], got)


def test_gray():
    g = rand((61, 83), seed=14)
    want = opencv_chain(cv2.cvtColor(g, cv2.COLOR_GRAY2BGR), (64, 64))[0]
    assert_close(letterbox(g, 64, pixel_format="gray")[0], want)
    assert_close(letterbox(g[:, :, None], 64, pixel_format="gray")[0], want)
    assert_close(letterbox(g[::-1].copy()[::-1], 64, pixel_format="gray")[0], want)


# -------------------------------------------------------------------------------- geometry
@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 5000), st.sampled_from([(640, 640), (320, 320), (384, 640),
                                                                    (416, 416), (480, 640)]),
       st.booleans(), st.booleans())
def test_plan_is_ultralytics(src_h, src_w, size, rect, center):
    r = min(size[0] / src_h, size[1] / src_w)
    if round(src_w * r) < 1 or round(src_h * r) < 1:
        return  # Ultralytics fails there (cv2.resize to 0); see test_extreme_aspect_ratio
    g = plan(src_h, src_w, size, mode="rect" if rect else "letterbox",
             pad_position="center" if center else "top_left")
    new_w, new_h = int(round(src_w * r)), int(round(src_h * r))
    dw, dh = size[1] - new_w, size[0] - new_h
    if rect:
        dw, dh = np.mod(dw, 32), np.mod(dh, 32)
    assert (g.new_w, g.new_h, g.dst_w, g.dst_h) == (new_w, new_h, new_w + dw, new_h + dh)
    (gain_x, gain_y), pad_x, pad_y = ultralytics_gain_pad((g.dst_h, g.dst_w), (src_h, src_w))
    if center:
        assert (g.left, g.top) == (int(round(dw / 2 - 0.1)), int(round(dh / 2 - 0.1)))
        assert (g.pad_x, g.pad_y, g.scale_x, g.scale_y) == (pad_x, pad_y, gain_x, gain_y)
        if not rect:  # letterbox: the mapping is exactly the inverse of the resize and padding
            assert (g.pad_x, g.pad_y, g.scale_x, g.scale_y) == (g.left, g.top, new_w / src_w, new_h / src_h)
    else:  # top-left models (YOLOX, YuNet) map back with the single ratio
        assert (g.left, g.top, g.pad_x, g.pad_y) == (0, 0, 0.0, 0.0)
        assert g.scale_x == g.scale_y == min(g.dst_h / src_h, g.dst_w / src_w)


def test_geometry_examples():
    g = plan(810, 1080, 640, mode="rect")  # Ultralytics rect: 1080x810 -> 640x480
    assert (g.dst_h, g.dst_w, g.new_h, g.new_w, g.top, g.left) == (480, 640, 480, 640, 0, 0)
    g = plan(1080, 810, 640, mode="rect")  # bus.jpg
    assert (g.dst_h, g.dst_w, g.pad_x, g.pad_y) == (640, 480, 0.0, 0.0)
    g = plan(720, 1280, 640, mode="rect")
    assert (g.dst_h, g.dst_w, g.new_h, g.top) == (384, 640, 360, 12)
    g = plan(1080, 1920, 640)
    assert g == Geometry(1080, 1920, 640, 640, 1 / 3, 1 / 3, 0.0, 140.0, 360, 640, 140, 0)
    g = plan(1080, 1920, 640, pad_position="top_left")
    assert (g.top, g.left, g.pad_x, g.pad_y) == (0, 0, 0.0, 0.0)
    g = plan(461, 614, 640)  # Ultralytics 8.4: pad of the rounded resize (481 rows -> 79), per-axis gains
    assert (g.new_h, g.top, g.pad_y, g.scale_x, g.scale_y) == (481, 79, 79.0, 640 / 614, 481 / 461)
    g = plan(1, 1, (640, 320))
    assert (g.new_h, g.new_w, g.top, g.left, g.scale_x) == (320, 320, 160, 0, 320.0)
    # Python's round is half-to-even: 5 px * 0.5 = 2.5 -> 2, 7 * 0.5 = 3.5 -> 4 (Ultralytics uses it)
    assert plan(1280, 5, 640).new_w == 2 and plan(1280, 7, 640).new_w == 4
    g = plan(480, 640, (300, 400), mode="stretch")
    assert (g.scale_x, g.scale_y, g.pad_x, g.top) == (400 / 640, 300 / 480, 0.0, 0)


def test_extreme_aspect_ratio():
    g = plan(1, 10000, 640)  # 1 * 0.064 rounds to 0: kept at 1 row (Ultralytics would fail)
    assert (g.new_h, g.new_w, g.dst_h, g.top) == (1, 640, 640, 319)
    got, _ = letterbox(rand((1, 10000, 3), 15), 640)
    assert_close(got, to_tensor(place(rand((1, 10000, 3), 15), g)))
    g = plan(10000, 3, 640, mode="rect")
    assert (g.new_w, g.dst_w, g.dst_h) == (1, 32, 640)


def test_center_crop_geometry():
    g = plan(375, 500, 224, mode="center_crop", resize_short=256)  # torchvision Resize(256)+CenterCrop(224)
    assert (g.new_h, g.new_w, g.top, g.left) == (256, 341, -16, -58)
    assert (g.pad_x, g.pad_y, g.scale_x) == (-58.0, -16.0, 341 / 500)
    g = plan(500, 375, 224, mode="center_crop")  # default resize_short = min(size)
    assert (g.new_h, g.new_w, g.top, g.left) == (298, 224, -37, 0)
    g = plan(100, 100, 224, mode="center_crop", resize_short=200)  # smaller than the crop: padded
    assert (g.new_h, g.top, g.left) == (200, 12, 12)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.integers(1, 60), st.integers(1, 70), st.integers(1, 70),
       st.sampled_from(["letterbox", "rect", "stretch", "center_crop"]), st.integers(0, 2**31))
def test_property_matches_opencv(h, w, th, tw, mode, seed):
    img = rand((h, w, 3), seed)
    got, g = letterbox(img, (th, tw), mode=mode, stride=8)
    assert_close(got, to_tensor(place(img, g)))
    # map-back: the tensor centre of the image region returns to the source centre (letterbox)
    if mode == "letterbox":
        cx = (g.left + g.new_w / 2 - g.pad_x) / g.scale_x
        assert abs(cx - w / 2) <= 1.5 / g.scale_x + 1e-9  # rounding of new_w and of the pads


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("image,kw,exc,match", [
    (np.zeros((4, 4, 3), np.float32), {}, EdgerunTypeError, "image: expected dtype uint8, got float32"),
    ([[1, 2]], {}, EdgerunTypeError, "image: expected a numpy.ndarray, got list"),
    (np.zeros((4, 4, 4), np.uint8), {}, EdgerunValueError, r"expects \(H, W, 3\) uint8, got shape \(4, 4, 4\)"),
    (np.zeros((4, 4), np.uint8), {}, EdgerunValueError, r"'bgr' expects \(H, W, 3\)"),
    (np.zeros((0, 4, 3), np.uint8), {}, EdgerunValueError, "image: empty image"),
    (np.zeros((4, 0), np.uint8), dict(pixel_format="gray"), EdgerunValueError, "image: empty image"),
    (np.zeros((4, 4, 3), np.uint8), dict(pixel_format="gray"), EdgerunValueError, r"'gray' expects \(H, W\)"),
    (np.zeros((6, 5), np.uint8), dict(pixel_format="nv12"), EdgerunValueError, "even width and height, got 4x5"),
    (np.zeros((9, 5), np.uint8), dict(pixel_format="i420"), EdgerunValueError, "even width and height, got 6x5"),
    (np.zeros((7, 4), np.uint8), dict(pixel_format="nv21"), EdgerunValueError,
     r"\(H\*3//2, W\) uint8 buffer with even H"),
    (np.zeros((3, 5, 2), np.uint8), dict(pixel_format="yuyv"), EdgerunValueError, "even width, got 3x5"),
    (np.zeros((4, 4, 3), np.uint8), dict(pixel_format="yuyv"), EdgerunValueError, r"\(H, W, 2\)"),
    (np.zeros((4, 4, 3), np.uint8), dict(pixel_format="bgra"), EdgerunValueError, "pixel_format: expected one of"),
    (np.zeros((4, 4, 3), np.uint8), dict(mode="fit"), EdgerunValueError, "mode: expected one of"),
    (np.zeros((4, 4, 3), np.uint8), dict(layout="nchw"), EdgerunValueError, "layout: expected one of"),
    (np.zeros((4, 4, 3), np.uint8), dict(channel_order="rbg"), EdgerunValueError, "channel_order"),
    (np.zeros((4, 4, 3), np.uint8), dict(pad_position="bottom"), EdgerunValueError, "pad_position"),
    (np.zeros((4, 4, 3), np.uint8), dict(dtype=np.float64), EdgerunTypeError, "dtype: expected float32 or float16"),
    (np.zeros((4, 4, 3), np.uint8), dict(dtype="bogus"), EdgerunTypeError, "dtype: expected float32 or float16"),
    (np.zeros((4, 4, 3), np.uint8), dict(size=(0, 4)), EdgerunValueError, r"size\[0\]: expected > 0"),
    (np.zeros((4, 4, 3), np.uint8), dict(size=(4, 4, 4)), EdgerunValueError, "size: expected an int or"),
    (np.zeros((4, 4, 3), np.uint8), dict(stride=0), EdgerunValueError, "stride: expected > 0"),
    (np.zeros((4, 4, 3), np.uint8), dict(std=(1, 0, 1)), EdgerunValueError, "std: expected non-zero"),
    (np.zeros((4, 4, 3), np.uint8), dict(mean=(1, 2)), EdgerunValueError, "mean: expected a number or 3 values"),
    (np.zeros((4, 4, 3), np.uint8), dict(scale=float("nan")), EdgerunValueError, "scale: expected a finite"),
    (np.zeros((4, 4, 3), np.uint8), dict(pad_value=300), EdgerunValueError, r"pad_value: .*\[0.0, 255.0\]"),
    (np.zeros((4, 4, 3), np.uint8), dict(resize_short=10), EdgerunValueError, "resize_short: only used"),
    (np.zeros((4, 4, 3), np.uint8), dict(size=8, out=np.zeros((3, 8, 9), np.float32)), EdgerunValueError,
     r"out: expected shape \(3, 8, 8\), got \(3, 8, 9\)"),
    (np.zeros((4, 4, 3), np.uint8), dict(size=8, layout="hwc", out=np.zeros((3, 8, 8), np.float32)),
     EdgerunValueError, r"out: expected shape \(8, 8, 3\)"),
    (np.zeros((4, 4, 3), np.uint8), dict(size=8, out=np.zeros((3, 8, 8), np.float16)), EdgerunTypeError,
     "out: expected dtype float32, got float16"),
    (np.zeros((4, 4, 3), np.uint8), dict(size=8, out=np.zeros((8, 8, 3), np.float32).transpose(2, 0, 1)),
     EdgerunValueError, "out: must be a C-contiguous writable array"),
])
def test_validation(image, kw, exc, match):
    with pytest.raises(exc, match=match):
        letterbox(image, **kw)


def test_plan_validation():
    with pytest.raises(EdgerunValueError, match="src_h: expected > 0, got 0"):
        plan(0, 10)
    with pytest.raises(EdgerunTypeError, match="src_w: expected an int, got float"):
        plan(10, 10.0)
    with pytest.raises(EdgerunValueError, match="mode: expected one of"):
        plan(10, 10, mode="pad")


def test_yuyv_from_padded_buffer_and_in_place():
    """YUYV is read as one (H, 2W) byte array: a row-padded driver buffer gives the same tensor (copied once),
    a contiguous 1080p frame is read in place (numpy allocations traced: far below the 4 MB a copy takes)."""
    import tracemalloc

    yuyv = rand((360, 480, 2), seed=21)
    padded = np.zeros((360, 512, 2), np.uint8)
    padded[:, :480] = yuyv
    want = opencv_chain(cv2.cvtColor(yuyv, cv2.COLOR_YUV2BGR_YUY2), (160, 160))[0]
    for frame in (yuyv, padded[:, :480]):
        got, _ = letterbox(frame, 160, pixel_format="yuyv")
        assert_close(got, want)
    big, out = rand((1080, 1920, 2), seed=22), np.empty((3, 640, 640), np.float32)
    letterbox(big, 640, pixel_format="yuyv", out=out)  # compiled and tables cached
    tracemalloc.start()
    try:
        letterbox(big, 640, pixel_format="yuyv", out=out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak
