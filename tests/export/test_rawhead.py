"""``edgerun export --head raw``: the DFL decode tail cut out of the graph, edgerun decoding the raw head.

The cut file must give the boxes of the uncut one (same objects and classes, boxes within 1e-3 px,
confidences within 1e-5: only the softmax summation order differs) on real photos, square and wide;
"auto" cuts int8 exports only; other heads are refused by name."""
from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest

from edgerun.export import ExportError, finish_onnx
from edgerun.export.rawhead import OUTPUT, cut_dfl_head
from edgerun.runtime import Detector
from edgerun.runtime.session import ModelError

from conftest import shared_file


@pytest.fixture(scope="module")
def raw_fp32(tmp_path_factory, yolo, photos):
    out = tmp_path_factory.mktemp("raw") / "raw.onnx"
    report = finish_onnx(yolo, str(out), head="raw", verify_images=photos)
    return out, report


def test_cut_graph_ends_at_the_raw_head(raw_fp32):
    out, report = raw_fp32
    assert report["ok"] and report["f1"] == 1.0 and report["spec_roundtrip"]
    assert report["raw_head"] == {"strides": [8, 16, 32], "reg_max": 16, "removed_nodes": 24}
    m = onnx.load(str(out))
    assert [o.name for o in m.graph.output] == [OUTPUT]
    assert not any(n.op_type == "Softmax" or "/dfl/" in n.name for n in m.graph.node)
    det = Detector.from_path(str(out))
    assert det.spec.head == "dfl" and det.spec.strides == (8, 16, 32) and det.spec.reg_max == 16
    assert "raw DFL" in report["table"] and "n/a (decode tail cut" in report["table"]


@pytest.mark.parametrize("image", ["bus.jpg", "zidane.jpg"])
@pytest.mark.parametrize("thr", [0.25, 0.001])
def test_same_detections_as_the_graph_decode(raw_fp32, yolo, image, thr):
    frame = cv2.imread(str(shared_file("images", image)))
    a = Detector.from_path(yolo, score_threshold=thr).detect(frame)
    b = Detector.from_path(str(raw_fp32[0]), score_threshold=thr).detect(frame)
    assert len(a) == len(b) and len(a) >= 3
    np.testing.assert_array_equal(a.class_id, b.class_id)
    np.testing.assert_allclose(b.xyxy, a.xyxy, rtol=0, atol=1e-3)
    np.testing.assert_allclose(b.confidence, a.confidence, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(a.data["anchor_index"], b.data["anchor_index"])


def test_auto_cuts_int8_only(tmp_path, yolo, photos):
    fp32 = tmp_path / "fp32.onnx"
    assert finish_onnx(yolo, str(fp32), verify_images=photos)["raw_head"] is None
    assert Detector.from_path(str(fp32)).spec.head == "yolov8"
    q = tmp_path / "int8.onnx"
    report = finish_onnx(yolo, str(q), precision="int8", calib=photos, verify_images=photos)
    assert report["ok"] and report["raw_head"]["reg_max"] == 16
    assert Detector.from_path(str(q)).spec.head == "dfl"
    g = tmp_path / "int8_graph.onnx"
    assert finish_onnx(yolo, str(g), precision="int8", calib=photos, verify_images=photos,
                       head="graph")["raw_head"] is None


def test_raw_refuses_other_heads_by_name(tmp_path, photos):
    yolox = str(shared_file("models", "yolox_nano_416.onnx"))
    with pytest.raises(ExportError, match="--head raw needs an Ultralytics DFL detection head.*'yolox'"):
        finish_onnx(yolox, str(tmp_path / "x.onnx"), head="raw", verify_images=photos)
    with pytest.raises(ExportError, match="head: expected one of"):
        finish_onnx(yolox, str(tmp_path / "x.onnx"), head="cut")
    assert not (tmp_path / "x.onnx").exists()


def test_cut_returns_none_without_a_dfl_tail(yolo):
    m = onnx.load(yolo)
    assert cut_dfl_head(m, (640, 640), num_classes=81) is None  # class convs of another width
    seg = onnx.load(str(shared_file("models", "yolov8n-seg_320_fp32dq.onnx")))
    assert cut_dfl_head(seg, (320, 320), num_classes=80) is None  # two outputs (protos): not a detect head


def test_wrong_reg_max_is_refused_when_the_model_opens(raw_fp32):
    with pytest.raises(ModelError, match="dfl"):
        Detector.from_path(str(raw_fp32[0]), reg_max=8)


def _as_ultralytics_84(model):
    """The shared (Ultralytics 8.3) yolov8n graph with its head flattened the way 8.4 exports write it: each
    level's box and class conv reshaped on its own, the levels of each concatenated (no per-level
    ``Concat(box, cls)``, no Split), the reshapes' batch dim read with ``Shape`` from the backbone feature
    map, as a dynamic H/W export computes its shapes."""
    from onnx import helper, numpy_helper

    drop = {f"/model.22/{n}" for n in ("Concat", "Concat_1", "Concat_2", "Reshape", "Reshape_1", "Reshape_2",
                                       "Concat_3", "Split")}
    feature = "/model.15/cv2/act/Mul_output_0"  # level 0's input, a backbone activation
    added = [numpy_helper.from_array(np.array(v, np.int64), k)
             for k, v in {"t84/zero": [0], "t84/box": [64], "t84/cls": [80], "t84/rest": [-1]}.items()]
    new = [helper.make_node("Shape", [feature], ["t84/shape"], name="t84/Shape"),
           helper.make_node("Gather", ["t84/shape", "t84/zero"], ["t84/batch"], name="t84/Gather", axis=0)]
    for kind, branch in (("box", "cv2"), ("cls", "cv3")):
        new.append(helper.make_node("Concat", ["t84/batch", f"t84/{kind}", "t84/rest"], [f"t84/{kind}_shape"],
                                    name=f"t84/{kind}_shape", axis=0))
        flat = []
        for level in range(3):
            conv = f"/model.22/{branch}.{level}/{branch}.{level}.2/Conv_output_0"
            flat.append(f"t84/{kind}{level}")
            new.append(helper.make_node("Reshape", [conv, f"t84/{kind}_shape"], [flat[-1]], name=flat[-1]))
        split_out = "/model.22/Split_output_0" if kind == "box" else "/model.22/Split_output_1"
        new.append(helper.make_node("Concat", flat, [split_out], name=f"t84/{kind}_cat", axis=-1))
    nodes = []
    for n in model.graph.node:  # the new nodes where the Split was (every head conv comes before it)
        nodes += new if n.name == "/model.22/Split" else [] if n.name in drop else [n]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(added)
    onnx.checker.check_model(model)
    return model


def test_cuts_the_ultralytics_84_head_layout(tmp_path, yolo):
    """Ultralytics 8.4 flattens box and class convs separately (the cut used to find no per-level pair and
    refused every 8.4 export). Here the box conv of a level is the one whose values reach the DFL softmax;
    the ``Shape`` read of a backbone activation stays out of the tail, and the activation stays in the graph."""
    from edgerun.export import quant

    m84 = _as_ultralytics_84(onnx.load(yolo))
    tail = quant.head_tail_nodes(m84)
    assert "t84/Shape" in tail and not any(t.startswith("/model.15/") for t in tail)
    src = tmp_path / "v84.onnx"
    onnx.save(m84, str(src))
    cut, info = cut_dfl_head(onnx.load(str(src)), (640, 640), num_classes=80)
    assert info.strides == (8, 16, 32) and info.reg_max == 16
    assert "/model.15/cv2/act/Mul" in {n.name for n in cut.graph.node}
    assert not any(n.name.startswith("t84/") or n.op_type in ("Softmax", "Shape") for n in cut.graph.node)
    out = tmp_path / "v84_raw.onnx"
    report = finish_onnx(str(src), str(out), head="raw", verify_images=str(shared_file("images")))
    assert report["ok"] and report["f1"] == 1.0 and report["raw_head"]["strides"] == [8, 16, 32]
    for image in ("bus.jpg", "zidane.jpg"):
        frame = cv2.imread(str(shared_file("images", image)))
        a, b = Detector.from_path(yolo).detect(frame), Detector.from_path(str(out)).detect(frame)
        assert len(a) == len(b) >= 3
        np.testing.assert_array_equal(a.class_id, b.class_id)
        np.testing.assert_allclose(b.xyxy, a.xyxy, rtol=0, atol=1e-3)
        np.testing.assert_allclose(b.confidence, a.confidence, rtol=0, atol=1e-5)
