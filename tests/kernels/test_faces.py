"""decode_yunet vs a naive numpy transcription of OpenCV's face_detect.cpp (exact order, atol 1e-4 px)."""
from __future__ import annotations

import numpy as np
import pytest

from edgerun.kernels.errors import EdgerunTypeError, EdgerunValueError
from edgerun.kernels.faces import decode_yunet


def _outputs(seed, hw=(64, 96), strides=(8, 16, 32)):
    rng = np.random.default_rng(seed)
    outs = {k: [] for k in ("cls", "obj", "bbox", "kps")}
    for s in strides:
        n = -(-hw[0] // s) * -(-hw[1] // s)
        outs["cls"].append(rng.uniform(-0.1, 1.1, (1, n, 1)).astype(np.float32))
        outs["obj"].append(rng.uniform(0, 1, (1, n, 1)).astype(np.float32))
        outs["bbox"].append(rng.normal(0, 1, (1, n, 4)).astype(np.float32))
        outs["kps"].append(rng.normal(0, 2, (1, n, 10)).astype(np.float32))
    return outs


def _naive(outs, hw, strides, thr):
    boxes, scores, lms = [], [], []
    for i, s in enumerate(strides):
        cols = -(-hw[1] // s)
        for j in range(outs["cls"][i].shape[1]):
            sc = np.sqrt(np.clip(outs["cls"][i][0, j, 0], 0, 1) * np.clip(outs["obj"][i][0, j, 0], 0, 1))
            if sc <= thr:
                continue
            r, c = divmod(j, cols)
            b, k = outs["bbox"][i][0, j].astype(np.float64), outs["kps"][i][0, j].astype(np.float64)
            cx, cy, w, h = (c + b[0]) * s, (r + b[1]) * s, np.exp(b[2]) * s, np.exp(b[3]) * s
            boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
            lms.append(np.stack([(c + k[0::2]) * s, (r + k[1::2]) * s], 1))
            scores.append(sc)
    order = np.argsort(-np.array(scores), kind="stable")
    return np.array(boxes)[order], np.array(scores)[order], np.array(lms)[order]


@pytest.mark.parametrize("hw", [(64, 96), (40, 40), (33, 70)])
def test_matches_naive(hw):
    outs = _outputs(0, hw)
    got = decode_yunet(outs["cls"], outs["obj"], outs["bbox"], outs["kps"], input_hw=hw, score_threshold=0.5)
    box, score, lm = _naive(outs, hw, (8, 16, 32), 0.5)
    assert len(got.scores) == len(score) > 0
    np.testing.assert_allclose(got.scores, score, rtol=1e-6)
    np.testing.assert_allclose(got.xyxy, box, atol=1e-4)
    np.testing.assert_allclose(got.landmarks, lm, atol=1e-4)
    assert got.xyxy.dtype == got.landmarks.dtype == np.float32


def test_cap_empty_and_2d_inputs():
    outs = _outputs(1)
    two_d = {k: [a[0] for a in v] for k, v in outs.items()}
    got = decode_yunet(two_d["cls"], two_d["obj"], two_d["bbox"], two_d["kps"], input_hw=(64, 96),
                       score_threshold=0.3, max_candidates=3)
    assert got.xyxy.shape == (3, 4) and got.landmarks.shape == (3, 5, 2)
    none = decode_yunet(outs["cls"], outs["obj"], outs["bbox"], outs["kps"], input_hw=(64, 96),
                        score_threshold=1.0)
    assert none.xyxy.shape == (0, 4) and none.landmarks.shape == (0, 5, 2)


def test_errors():
    outs = _outputs(2)
    with pytest.raises(EdgerunValueError, match=r"bbox\[1\]: expected \(1, 24, 4\)"):
        decode_yunet(outs["cls"], outs["obj"], [outs["bbox"][0]] * 3, outs["kps"], input_hw=(64, 96))
    with pytest.raises(EdgerunTypeError, match=r"cls\[0\]: expected dtype float32"):
        decode_yunet([outs["cls"][0].astype(np.float64)] + outs["cls"][1:], outs["obj"], outs["bbox"],
                     outs["kps"], input_hw=(64, 96))
    with pytest.raises(EdgerunValueError, match="one array per stride"):
        decode_yunet(outs["cls"][:2], outs["obj"], outs["bbox"], outs["kps"], input_hw=(64, 96))


def _pad_reference(img, hw, swap, scale, mean, std, pad):
    x = img[..., ::-1] if swap else img
    out = np.empty((3,) + hw, np.float32)
    out[:] = ((pad * scale - np.asarray(mean)) / np.asarray(std)).astype(np.float32)[:, None, None]
    out[:, :img.shape[0], :img.shape[1]] = ((x.transpose(2, 0, 1) * scale - np.asarray(mean)[:, None, None])
                                            / np.asarray(std)[:, None, None])
    return out


@pytest.mark.parametrize("hw,out_hw,src,dst", [((5, 7), (32, 32), "bgr", "bgr"), ((33, 64), (64, 64), "rgb", "bgr"),
                                               ((1, 1), (1, 1), "bgr", "rgb"), ((32, 31), (32, 32), "bgr", "bgr")])
def test_pad_chw_matches_numpy(hw, out_hw, src, dst):
    """pad_chw vs numpy (exact: one float32 lookup per pixel, the table in float64 then rounded once)."""
    from edgerun.kernels.faces import pad_chw

    img = np.random.default_rng(0).integers(0, 256, hw + (3,), dtype=np.uint8)
    mean, std = (0.5, 1.0, 2.0), (0.25, 1.0, 4.0)
    out = np.full((3,) + out_hw, np.nan, np.float32)
    res = pad_chw(img, out, source_order=src, channel_order=dst, scale=1 / 255, mean=mean, std=std, pad_value=7)
    assert res is out
    np.testing.assert_allclose(out, _pad_reference(img, out_hw, src != dst, 1 / 255, mean, std, 7), rtol=1e-6)
    wide = np.zeros((hw[0], hw[1] * 2, 3), np.uint8)
    wide[:, ::2] = img  # non-contiguous input
    np.testing.assert_array_equal(pad_chw(wide[:, ::2], np.empty_like(out), source_order=src, channel_order=dst,
                                          scale=1 / 255, mean=mean, std=std, pad_value=7), out)


def test_pad_chw_errors():
    from edgerun.kernels.faces import pad_chw

    img = np.zeros((10, 12, 3), np.uint8)
    with pytest.raises(EdgerunValueError, match=r"out: expected \(3, >= 10, >= 12\)"):
        pad_chw(img, np.zeros((3, 8, 32), np.float32))
    with pytest.raises(EdgerunTypeError, match="image: expected dtype uint8"):
        pad_chw(img.astype(np.float32), np.zeros((3, 32, 32), np.float32))
    with pytest.raises(EdgerunValueError, match="channel_order"):
        pad_chw(img, np.zeros((3, 32, 32), np.float32), channel_order="yuv")
    with pytest.raises(EdgerunValueError, match="C-contiguous"):
        pad_chw(img, np.zeros((3, 32, 64), np.float32)[:, :, ::2])
