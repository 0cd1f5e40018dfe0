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
def yolo():
    return str(shared_file("models", "yolov8n_640_fp32dq.onnx"))


@pytest.fixture(scope="module")
def photos():
    return str(shared_file("images"))


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
