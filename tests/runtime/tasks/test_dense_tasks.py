"""DepthEstimator and the Ultralytics semantic path on tiny ONNX graphs with Ultralytics' metadata, against
plain cv2 + numpy references of what Ultralytics' predictors do (stretch + align_corners=True bilinear for
depth; letterbox, crop to the content and PyTorch ``nearest`` for a baked class map; bilinear + argmax at
frame size for logits). Real Ultralytics exports are compared with ``YOLO(onnx).predict`` in the export
lane (tests/export/test_ultra_dense.py)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgerun.runtime import DepthEstimator, DepthMap, SemanticSegmenter, open_model
from edgerun.runtime.results import result_record
from edgerun.runtime.session import ModelError
from edgerun.runtime.tasks.dispatch import annotate

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

S = 64  # model input size


def _save(path, nodes, out_type, out_shape, task, names):
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, S, S])
    y = helper.make_tensor_value_info("out", out_type, out_shape)
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    meta = {"task": task, "imgsz": f"[{S}, {S}]", "stride": "32", "names": repr(names), "end2end": "False",
            "args": "{'batch': 1, 'nms': False}"}
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(m, str(path))
    return str(path)


def _depth_model(tmp_path):
    """depth = 1 + mean over RGB (positive, image-dependent), (1, 1, S, S)."""
    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], axes=[1], keepdims=1),
             helper.make_node("Constant", [], ["one"], value=helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])),
             helper.make_node("Add", ["m", "one"], ["out"])]
    return _save(tmp_path / "depth.onnx", nodes, TensorProto.FLOAT, [1, 1, S, S], "depth", {0: "depth"})


def _semantic_model(tmp_path, baked: bool):
    """3 classes = the RGB channels: the class map is the strongest channel (baked: ArgMax + Cast uint8)."""
    if baked:
        nodes = [helper.make_node("ArgMax", ["images"], ["a"], axis=1, keepdims=0),
                 helper.make_node("Cast", ["a"], ["out"], to=TensorProto.UINT8)]
        return _save(tmp_path / "sem_baked.onnx", nodes, TensorProto.UINT8, [1, S, S], "semantic",
                     {0: "r", 1: "g", 2: "b"})
    nodes = [helper.make_node("Identity", ["images"], ["out"])]
    return _save(tmp_path / "sem_logits.onnx", nodes, TensorProto.FLOAT, [1, 3, S, S], "semantic",
                 {0: "r", 1: "g", 2: "b"})


def _image(h, w, seed=0):
    """Smooth colour blobs (classes form regions, as in a real photo)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _taps(n_in, n_out, align):
    i = np.arange(n_out, dtype=np.float64)
    src = i * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0) if align else np.maximum((i + 0.5) * n_in / n_out - 0.5, 0)
    i0 = src.astype(int)
    return i0, np.minimum(i0 + 1, n_in - 1), src - i0


def _bilinear(x, oh, ow, align):
    y0, y1, ly = _taps(x.shape[-2], oh, align)
    x0, x1, lx = _taps(x.shape[-1], ow, align)
    top = x[..., y0, :][..., x0] * (1 - lx) + x[..., y0, :][..., x1] * lx
    bot = x[..., y1, :][..., x0] * (1 - lx) + x[..., y1, :][..., x1] * lx
    return top * (1 - ly)[:, None] + bot * ly[:, None]


def _letterbox(img):
    h, w = img.shape[:2]
    r = min(S / h, S / w)
    nh, nw = int(round(h * r)), int(round(w * r))
    top, left = int(round((S - nh) / 2 - 0.1)), int(round((S - nw) / 2 - 0.1))
    canvas = np.full((S, S, 3), 114, np.uint8)
    canvas[top:top + nh, left:left + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas[:, :, ::-1].astype(np.float32) / 255  # RGB


def _crop(h, w):
    gain = min(S / h, S / w)
    ch, cw = max(round(h * gain), 1), max(round(w * gain), 1)
    top, left = round((S - ch) / 2 - 0.1), round((S - cw) / 2 - 0.1)
    return top, top + ch, left, left + cw


def _nearest(n_in, n_out):
    if n_in == n_out:
        return np.arange(n_out)
    scale = np.float32(n_in) / np.float32(n_out)
    return np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(int), n_in - 1)


@pytest.mark.parametrize("hw", [(90, 160), (120, 120), (200, 75)])
def test_depth_stretch_and_align_corners(tmp_path, hw):
    h, w = hw
    img = _image(h, w)
    m = open_model(_depth_model(tmp_path))
    assert isinstance(m, DepthEstimator) and m.spec.resize == "stretch"
    r = m.run(img)
    assert isinstance(r, DepthMap) and r.depth.shape == (h, w) and r.depth.dtype == np.float32
    x = cv2.resize(img, (S, S), interpolation=cv2.INTER_LINEAR)[:, :, ::-1].astype(np.float64) / 255
    ref = _bilinear((1 + x.mean(axis=2))[None], h, w, True)[0]
    np.testing.assert_allclose(r.depth, ref, rtol=1e-5)
    assert r.depth.max() - r.depth.min() > 0.1  # the image shows through
    rec = result_record("x.jpg", 0, r, ())
    assert set(rec["depth"]) == {"min", "median", "max", "mean"} and rec["width"] == w
    assert len(json.dumps(rec)) < 400  # compact: no per-pixel map
    assert set(r.timings) == {"preprocess", "inference", "postprocess"}
    shown = annotate(img.copy(), r)
    assert shown.shape == img.shape and not np.array_equal(shown, img)


@pytest.mark.parametrize("hw", [(90, 160), (64, 64), (200, 75), (37, 301)])
def test_ultralytics_semantic_baked_class_map(tmp_path, hw):
    h, w = hw
    img = _image(h, w, 1)
    m = open_model(_semantic_model(tmp_path, True))
    assert isinstance(m, SemanticSegmenter) and m.spec.resize == "letterbox"
    r = m.run(img)
    labels = np.argmax(_letterbox(img), axis=2)
    if (h, w) != (S, S):
        t, b, left, right = _crop(h, w)
        crop = labels[t:b, left:right]
        labels = crop[_nearest(crop.shape[0], h)[:, None], _nearest(crop.shape[1], w)[None, :]]
    assert r.label_map.shape == (h, w) and r.label_map.dtype == np.uint8
    np.testing.assert_array_equal(r.label_map, labels)
    assert len(np.unique(labels)) > 1
    assert {c["class_name"] for c in r.to_records()} <= {"r", "g", "b"}
    assert not np.array_equal(annotate(img.copy(), r, m.spec.names), img)  # class 0 drawn too


@pytest.mark.parametrize("hw", [(90, 160), (200, 75)])
def test_ultralytics_semantic_logits(tmp_path, hw):
    h, w = hw
    img = _image(h, w, 2)
    r = open_model(_semantic_model(tmp_path, False)).run(img)
    t, b, left, right = _crop(h, w)
    x = _letterbox(img).transpose(2, 0, 1).astype(np.float64)[:, t:b, left:right]
    ref = np.argmax(_bilinear(x, h, w, False), axis=0)
    assert (r.label_map == ref).mean() > 0.999  # float32 vs float64 near-ties only
    assert len(np.unique(ref)) > 1


def test_depth_refuses_other_heads(tmp_path):
    with pytest.raises(ModelError, match="depth"):
        DepthEstimator.from_path(_semantic_model(tmp_path, False))
