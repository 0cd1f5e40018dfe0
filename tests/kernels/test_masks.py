"""process_masks vs an independent numpy + cv2 reference of Ultralytics 8.4's default masks
(retina_masks=False): logits coef @ protos (float64 here), cv2.resize INTER_LINEAR to the tensor size
(half-pixel centres, edge clamp: the same taps as torch bilinear align_corners=False), > 0, crop to the
box in tensor pixels (x1 <= px < x2), then scale_masks: the letterboxed content of that binary mask
(padding of the rounded resize) resized INTER_LINEAR to the source, > 0.5.
Tolerance: at most 0.1% of pixels per mask may differ (float64 vs float32 sums, cv2's blend order vs
PyTorch's, both at exactly the threshold); measured: 0 differing pixels in these cases."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgerun.kernels.errors import EdgerunTypeError, EdgerunValueError
from edgerun.kernels.masks import process_masks
from edgerun.kernels.preprocess import plan


def _content(h, w, src_h, src_w):
    """Ultralytics 8.4 scale_masks: the image's rows/columns inside an (h, w) letterboxed grid."""
    gain = min(h / src_h, w / src_w)
    ch, cw = max(round(src_h * gain), 1), max(round(src_w * gain), 1)
    top, left = round((h - ch) / 2 - 0.1), round((w - cw) / 2 - 0.1)
    return top, left, top + ch, left + cw


def _inside(boxes, h, w):
    c, r = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
    b = boxes.astype(np.float64)
    return (r >= b[:, 0, None, None]) & (r < b[:, 2, None, None]) & (c >= b[:, 1, None, None]) & \
        (c < b[:, 3, None, None])


def _reference(protos, coef, boxes, geo):
    """(full masks (K, H, W), tensor-resolution nonempty (K,), proto-mode masks (K, bh, bw))."""
    m_, mh, mw = protos.shape
    th, tw = geo.dst_h, geo.dst_w
    logits = (coef.astype(np.float64) @ protos.reshape(m_, -1).astype(np.float64)).reshape(-1, mh, mw)
    up = np.stack([cv2.resize(x, (tw, th), interpolation=cv2.INTER_LINEAR) > 0 for x in logits]) \
        if len(logits) else np.zeros((0, th, tw), bool)
    binary = up & _inside(boxes, th, tw)
    t, l, bt, rt = _content(th, tw, geo.src_h, geo.src_w)
    full = np.stack([cv2.resize(x[t:bt, l:rt].astype(np.float32), (geo.src_w, geo.src_h),
                                interpolation=cv2.INTER_LINEAR) > 0.5 for x in binary]) if len(binary) else \
        np.zeros((0, geo.src_h, geo.src_w), bool)
    pb = boxes.astype(np.float64) * np.array([mw / tw, mh / th] * 2)
    pt, pl, pbt, prt = _content(mh, mw, geo.src_h, geo.src_w)
    proto = ((logits > 0) & _inside(pb, mh, mw))[:, pt:pbt, pl:prt]
    return full, binary.reshape(len(binary), -1).any(1), proto


def _case(seed, src_hw, size, k=5, mh=40):
    rng = np.random.default_rng(seed)
    geo = plan(*src_hw, size)
    protos = rng.normal(0, 1, (8, mh, mh * size[1] // size[0])).astype(np.float32)
    protos = cv2.GaussianBlur(protos.transpose(1, 2, 0), (7, 7), 2).transpose(2, 0, 1).copy()
    coef = rng.normal(0, 2, (k, 8)).astype(np.float32)
    xy = rng.uniform(-20, size[1] + 20, (k, 2))
    wh = rng.uniform(1, size[1] / 2, (k, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    return protos, coef, boxes, geo


@pytest.mark.parametrize("src_hw,size", [((1080, 810), (160, 160)), ((720, 1280), (160, 160)),
                                         ((33, 47), (160, 160)), ((161, 161), (160, 160)),
                                         ((300, 200), (96, 160)), ((333, 517), (160, 160)),
                                         ((1001, 563), (320, 320)), ((540, 960), (320, 320)),
                                         ((1, 1), (32, 32)), ((1, 400), (64, 64)), ((700, 3), (64, 64))])
def test_full_and_proto_match_reference(src_hw, size):
    """Square, wide, tall, tiny, non-square tensors, odd padding (333x517 in 160: 28.5 rows), 1x1 and
    extreme aspect ratios (content of one tensor row/column)."""
    protos, coef, boxes, geo = _case(0, src_hw, size, mh=size[0] // 4)
    ref_full, ref_nonempty, ref_proto = _reference(protos, coef, boxes, geo)
    nonempty = np.zeros(5, bool)
    full = process_masks(protos, coef, boxes, geo, nonempty=nonempty)
    assert full.shape == (5,) + src_hw and full.dtype == np.bool_
    diff = (full != ref_full).mean((1, 2))
    assert diff.max() <= 1e-3, diff
    np.testing.assert_array_equal(nonempty, ref_nonempty)
    np.testing.assert_array_equal(process_masks(protos[None], coef, boxes, geo, mode="proto"), ref_proto)


def test_empty_out_reuse_and_degenerate_boxes():
    protos, coef, boxes, geo = _case(1, (100, 120), (64, 64), k=3, mh=16)
    assert process_masks(protos, coef[:0], boxes[:0], geo).shape == (0, 100, 120)
    boxes[1] = [500, 500, 600, 600]  # outside the tensor
    boxes[2] = [10, 10, 10, 30]  # zero width
    out = np.ones((3, 100, 120), bool)
    res = process_masks(protos, coef, boxes, geo, out=out)
    assert res is out and not out[1].any() and not out[2].any()
    ref = _reference(protos, coef, boxes, geo)[0]
    assert (out != ref).mean() <= 1e-3


def test_non_contiguous_and_float16_protos():
    protos, coef, boxes, geo = _case(2, (200, 150), (64, 64), k=4, mh=16)
    a = process_masks(protos, coef, boxes, geo)
    wide = np.zeros((8, 16, 32), np.float32)
    wide[:, :, ::2] = protos
    b = process_masks(wide[:, :, ::2], np.asfortranarray(coef), boxes, geo)
    np.testing.assert_array_equal(a, b)
    h = process_masks(protos.astype(np.float16), coef, boxes, geo)
    assert (h != a).mean() <= 1e-3


def test_errors():
    protos, coef, boxes, geo = _case(3, (50, 50), (32, 32), k=2, mh=8)
    with pytest.raises(EdgerunValueError, match="mode"):
        process_masks(protos, coef, boxes, geo, mode="low")
    with pytest.raises(EdgerunValueError, match=r"coefficients/xyxy: expected \(K, 8\)"):
        process_masks(protos, coef[:, :4].copy(), boxes, geo)
    with pytest.raises(EdgerunTypeError, match="coefficients: expected dtype float32"):
        process_masks(protos, coef.astype(np.float64), boxes, geo)
    with pytest.raises(EdgerunValueError, match="out: expected shape"):
        process_masks(protos, coef, boxes, geo, out=np.zeros((2, 5, 5), bool))


def test_boxes_entirely_in_the_padding_give_empty_masks():
    """Regression (found by the NUMBA_BOUNDSCHECK run): a box covering no output pixel was read past
    the end of the tap tables."""
    protos = np.ones((4, 16, 16), np.float32)
    coef = np.ones((2, 4), np.float32)
    strips = {(100, 400): [[0, 0, 64, 8], [0, 58, 64, 64]],  # wide: padding above and below
              (400, 100): [[0, 0, 8, 64], [58, 0, 64, 64]]}  # tall: padding left and right
    for src, b in strips.items():
        geo = plan(*src, (64, 64))
        boxes = np.array(b, np.float32)
        out = process_masks(protos, coef, boxes, geo)
        assert out.shape == (2, *src) and not out.any()
        np.testing.assert_array_equal(out, _reference(protos, coef, boxes, geo)[0])
