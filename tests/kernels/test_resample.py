"""kernels/resample.py vs the libraries it reproduces.

- ``pil_resize`` vs Pillow's ``Image.resize(BILINEAR)`` (importorskip PIL): exact for a resize along one
  axis; for both axes at once within 1 LSB (Pillow 13 sometimes runs its two passes in the other order,
  rounding the intermediate differently; measured: at most 1, on ~8% of values over random sizes), and exact
  on the shared food photos at the YOLO26n-cls centre crop (the case Ultralytics' classifiers run).
- ``resize_bilinear`` / ``bilinear_argmax`` vs a naive numpy transcription of PyTorch's bilinear formula
  (float64, rtol 1e-5), and vs ``torch.nn.functional.interpolate`` where torch is installed (atol 1e-4 on values
  of scale 3: float32 summation order; measured max 2.2e-5).
- ``nearest_index`` vs PyTorch's ``mode="nearest"`` (exact, torch importorskip).
"""
from __future__ import annotations

import numpy as np
import pytest

from edgerun.kernels.errors import EdgerunTypeError, EdgerunValueError
from edgerun.kernels.resample import bilinear_argmax, nearest_index, pil_resize, resize_bilinear

from helpers import shared_dir


def _pil(image, oh, ow):
    Image = pytest.importorskip("PIL.Image")
    return np.array(Image.fromarray(image).resize((ow, oh), Image.BILINEAR))


@pytest.mark.parametrize("seed", range(6))
def test_pil_resize_one_axis_is_exact(seed):
    rng = np.random.default_rng(seed)
    h, w, n = (int(v) for v in rng.integers(2, 300, 3))
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    for oh, ow in ((n, w), (h, n)):
        np.testing.assert_array_equal(pil_resize(image, (oh, ow)), _pil(image, oh, ow))


@pytest.mark.parametrize("seed", range(6))
def test_pil_resize_two_axes_within_one(seed):
    rng = np.random.default_rng(100 + seed)
    h, w, oh, ow = (int(v) for v in rng.integers(2, 400, 4))
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    d = np.abs(pil_resize(image, (oh, ow)).astype(int) - _pil(image, oh, ow))
    assert d.max() <= 1 and (d > 0).mean() < 0.3


def test_pil_resize_gray_and_region():
    rng = np.random.default_rng(7)
    g = rng.integers(0, 256, (90, 130), dtype=np.uint8)
    full = pil_resize(g, (60, 70))
    assert full.shape == (60, 70)
    np.testing.assert_array_equal(pil_resize(g, (60, 70), region=(5, 10, 40, 50)), full[5:45, 10:60])
    out = np.empty((40, 50), np.uint8)
    assert pil_resize(g, (60, 70), region=(5, 10, 40, 50), out=out) is out


@pytest.mark.parametrize("name", ["2.jpg", "3.jpg", "5.jpg"])
def test_pil_resize_food_photos_centre_crop_exact(name):
    cv2 = pytest.importorskip("cv2")
    path = shared_dir() / "images-food" / name
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared not found)")
    image = cv2.imread(str(path))
    h, w = image.shape[:2]
    nh, nw = (int(224 * h / w), 224) if w <= h else (224, int(224 * w / h))  # torchvision Resize(224)
    top, left = int(round((nh - 224) / 2)), int(round((nw - 224) / 2))
    ref = _pil(image, nh, nw)[top:top + 224, left:left + 224]
    np.testing.assert_array_equal(pil_resize(image, (nh, nw), region=(top, left, 224, 224)), ref)


def test_pil_resize_bad_input():
    with pytest.raises(EdgerunTypeError, match="uint8"):
        pil_resize(np.zeros((4, 4, 3), np.float32), (2, 2))
    with pytest.raises(EdgerunValueError, match="region"):
        pil_resize(np.zeros((4, 4, 3), np.uint8), (2, 2), region=(1, 1, 2, 2))
    with pytest.raises(EdgerunValueError, match="shape"):
        pil_resize(np.zeros((4, 4, 3), np.uint8), (2, 2), out=np.zeros((3, 3, 3), np.uint8))


def _naive_bilinear(x, oh, ow, align):
    """PyTorch's upsample_bilinear2d formula, one output at a time, float64."""
    c, h, w = x.shape

    def taps(n_in, n_out, i):
        if align:
            s = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
            src = s * i
        else:
            src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = int(src)
        return i0, min(i0 + 1, n_in - 1), src - i0

    out = np.zeros((c, oh, ow))
    for yy in range(oh):
        y0, y1, ly = taps(h, oh, yy)
        for xx in range(ow):
            x0, x1, lx = taps(w, ow, xx)
            out[:, yy, xx] = ((1 - ly) * ((1 - lx) * x[:, y0, x0] + lx * x[:, y0, x1])
                              + ly * ((1 - lx) * x[:, y1, x0] + lx * x[:, y1, x1]))
    return out


@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("shape", [(3, 7, 9, 20, 13), (1, 16, 16, 5, 31), (2, 10, 6, 10, 6), (1, 1, 5, 4, 1)])
def test_resize_bilinear_matches_naive(align, shape):
    c, h, w, oh, ow = shape
    x = np.random.default_rng(1).normal(0, 3, (c, h, w)).astype(np.float32)
    np.testing.assert_allclose(resize_bilinear(x, (oh, ow), align_corners=align),
                               _naive_bilinear(x.astype(np.float64), oh, ow, align), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("align", [False, True])
def test_resize_bilinear_matches_torch(align):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).normal(0, 3, (4, 33, 47)).astype(np.float32)
    for oh, ow in ((100, 61), (12, 200), (33, 47)):
        ref = torch.nn.functional.interpolate(torch.from_numpy(x)[None], (oh, ow), mode="bilinear",
                                              align_corners=align)[0].numpy()
        np.testing.assert_allclose(resize_bilinear(x, (oh, ow), align_corners=align), ref, rtol=1e-5, atol=1e-4)


def test_bilinear_argmax_is_argmax_of_resize():
    x = np.random.default_rng(3).normal(0, 1, (19, 20, 24)).astype(np.float32)
    labels = bilinear_argmax(x, (57, 41))
    ref = np.argmax(_naive_bilinear(x.astype(np.float64), 57, 41, False), axis=0)
    assert labels.dtype == np.uint8 and labels.shape == (57, 41)
    assert (labels == ref).mean() > 0.999  # float32 vs float64 near-ties only
    assert len(np.unique(labels)) > 5


def test_nearest_index_matches_torch():
    torch = pytest.importorskip("torch")
    for n_in, n_out in ((640, 1080), (480, 810), (7, 14), (640, 640), (13, 5), (300, 1280)):
        x = torch.arange(n_in, dtype=torch.float32)[None, None, :]
        ref = torch.nn.functional.interpolate(x, size=n_out, mode="nearest")[0, 0].numpy().astype(np.int64)
        np.testing.assert_array_equal(nearest_index(n_in, n_out), ref)


def test_float_maps_bad_input():
    with pytest.raises(EdgerunTypeError, match="float32"):
        resize_bilinear(np.zeros((1, 4, 4), np.float64), (2, 2))
    with pytest.raises(EdgerunValueError, match="dimensions"):
        resize_bilinear(np.zeros((4, 4), np.float32), (2, 2))
    with pytest.raises(EdgerunValueError, match="256"):
        bilinear_argmax(np.zeros((300, 2, 2), np.float32), (2, 2))
