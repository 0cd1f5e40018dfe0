"""The int8 float-node search (export.int8search) and the QDQ options of quant.to_int8."""
from __future__ import annotations

import importlib.util
import os

import onnx
import pytest

from edgerun.export import ExportError, finish_onnx, quant
from edgerun.export.int8search import float_groups

from conftest import shared_file
from helpers import write_scenes

DEMO_ONNX = os.path.join(os.path.dirname(importlib.util.find_spec("edgerun.runtime").origin), "data", "demo.onnx")


def test_float_groups_of_yolov8n_split_the_fixed_rule():
    """Tail, stem and the last head convs split by width (DFL box logits 64, COCO classes 80): together
    exactly the fixed rule's nodes."""
    model = onnx.load(str(shared_file("models", "yolov8n_640_fp32dq.onnx")))
    groups = float_groups(model)
    assert list(groups) == ["decode tail", "stem", "head convs (64 out)", "head convs (80 out)"]
    assert len(groups["head convs (64 out)"]) == len(groups["head convs (80 out)"]) == 3
    tail = quant.head_tail_nodes(model)
    fixed = quant.stem_nodes(model) + tail + quant.head_output_layers(model, tail)
    assert sorted(n for v in groups.values() for n in v) == sorted(fixed)


def test_search_passes_the_gate_within_its_trial_budget(tmp_path):
    calib = write_scenes(tmp_path / "calib", 12)
    r = finish_onnx(DEMO_ONNX, str(tmp_path / "d8.onnx"), precision="int8", calib=str(calib),
                    float_nodes="search", search_trials=5)
    s = r["int8_search"]
    assert r["ok"] and s["passed"] and 1 <= len(s["trials"]) <= 5
    assert r["excluded_nodes"] == s["float_nodes"]
    passing = [t for t in s["trials"] if t["passed"]]
    assert s["chosen"] in passing and all(t["ms"] > 0 and t["block_ms"] for t in passing)
    fastest = min(t["ms"] for t in passing)
    assert s["chosen"]["ms"] <= fastest * 1.02 + 1e-9  # within the tie margin of the fastest passing set
    assert s["trials"][0]["groups"] == []  # the search starts from all-int8
    assert "searched:" in r["table"]


def test_an_explicit_float_node_list_is_used_exactly(tmp_path):
    calib = write_scenes(tmp_path / "calib", 8)
    tail = quant.head_tail_nodes(onnx.load(DEMO_ONNX))
    r = finish_onnx(DEMO_ONNX, str(tmp_path / "d8.onnx"), precision="int8", calib=str(calib), float_nodes=tail,
                    force=True)
    assert r["excluded_nodes"] == tail and "given list" in r["table"]


def test_unknown_float_nodes_mode_is_refused(tmp_path):
    with pytest.raises(ExportError, match=r"float_nodes: expected one of \('fixed', 'search'\), got 'best'"):
        finish_onnx(DEMO_ONNX, str(tmp_path / "x.onnx"), precision="int8", calib=str(tmp_path), float_nodes="best")


@pytest.mark.parametrize("qdq, act_dtype, weight_axis", [({}, onnx.TensorProto.UINT8, True),
                                                          ({"activation": "s8"}, onnx.TensorProto.INT8, True),
                                                          ({"per_channel": False}, onnx.TensorProto.UINT8, False)])
def test_qdq_options_reach_the_graph(tmp_path, qdq, act_dtype, weight_axis):
    """Activation zero points are uint8 (U8S8) or int8 (S8S8); per-channel weights have a scale vector."""
    calib = write_scenes(tmp_path / "calib", 4)
    from edgerun.runtime import Detector
    from edgerun.runtime.sources import read_image
    from edgerun.export.verify import image_files

    det = Detector.from_path(DEMO_ONNX)
    feed = quant.ImageFeed(image_files(str(calib), "calib"), read_image, lambda im: det.preprocess(im)[0],
                           det.spec.input_name)
    out = str(tmp_path / "q.onnx")
    quant.to_int8(DEMO_ONNX, out, feed, quant.head_tail_nodes(onnx.load(DEMO_ONNX)), **qdq)
    m = onnx.load(out)
    init = {t.name: t for t in m.graph.initializer}
    q = [n for n in m.graph.node if n.op_type == "QuantizeLinear"]
    assert q and {init[n.input[2]].data_type for n in q if n.input[2] in init} == {act_dtype}
    conv_w = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in init
              and len(init[n.input[0]].dims) == 4]
    assert conv_w and all((len(init[n.input[1]].dims) == 1 and init[n.input[1]].dims[0] > 1) == weight_axis
                          for n in conv_w)
    with pytest.raises(ValueError, match="activation: expected 'u8' or 's8', got 'u4'"):
        quant.to_int8(DEMO_ONNX, out, feed, [], activation="u4")
