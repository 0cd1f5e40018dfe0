"""finish_onnx / `edgerun export`: metadata, fp16, int8 QDQ with the head kept float, the gate."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import cv2
import numpy as np
import onnx
import pytest

from edgerun.export import ExportError, finish_onnx
from edgerun.export import quant
from edgerun.runtime.session import ModelError, Session
from edgerun.runtime.spec import SCHEMA_KEY, resolve_spec

from conftest import shared_file
from helpers import write_scenes

RUNTIME_DIR = os.path.dirname(importlib.util.find_spec("edgerun.runtime").origin)
DEMO_ONNX = os.path.join(RUNTIME_DIR, "data", "demo.onnx")


def _leftovers(folder) -> list[str]:
    return [f for f in os.listdir(folder) if f.startswith(".edgerun-export-")]


# -- metadata --------------------------------------------------------------------------------------
def test_fp32_writes_metadata_that_round_trips(tmp_path):
    out = tmp_path / "demo.onnx"
    report = finish_onnx(DEMO_ONNX, str(out))
    assert report["ok"] and report["spec_roundtrip"] and report["f1"] == 1.0
    assert report["max_abs_error"] == 0.0 and report["images"] >= 4
    src, new = Session(DEMO_ONNX), Session(str(out))
    a = resolve_spec(src.metadata, src.inputs, src.outputs)
    b = resolve_spec(new.metadata, new.inputs, new.outputs)
    assert a == b and set(b.guessed) <= {"output_names"}  # output_names: always from the graph


def test_keeps_ultralytics_props_and_adds_edgerun_schema(tmp_path, yolo, photos):
    out = tmp_path / "y16.onnx"
    finish_onnx(yolo, str(out), precision="fp16", verify_images=photos)
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    src = {p.key: p.value for p in onnx.load(yolo).metadata_props}
    assert SCHEMA_KEY in props and all(props[k] == v for k, v in src.items())
    sess = Session(str(out))
    spec = resolve_spec(sess.metadata, sess.inputs, sess.outputs)
    assert spec.num_classes == 80 and spec.names[0] == "person" and set(spec.guessed) <= {"output_names"}


def test_spec_overrides_are_written(tmp_path):
    out = tmp_path / "bgr.onnx"
    finish_onnx(DEMO_ONNX, str(out), names=("a", "b", "c", "d"))
    sess = Session(str(out))
    assert resolve_spec(sess.metadata, sess.inputs, sess.outputs).names == ("a", "b", "c", "d")


# -- fp16 / int8 -----------------------------------------------------------------------------------
def test_fp16_is_half_the_size_and_agrees(tmp_path, yolo, photos):
    out = tmp_path / "y16.onnx"
    r = finish_onnx(yolo, str(out), precision="fp16", verify_images=photos)
    assert 0.45 < r["bytes"] / r["source_bytes"] < 0.55
    assert r["f1"] >= 0.99 and r["ref_boxes"] >= 10 and r["max_rel_error"] < 0.05
    sess = Session(str(out))
    assert sess.inputs[0].dtype == np.float32 and sess.outputs[0].dtype == np.float32  # keep_io_types


def test_fp16_demo(tmp_path):
    r = finish_onnx(DEMO_ONNX, str(tmp_path / "d16.onnx"), precision="fp16")
    assert r["f1"] >= 0.99 and r["bytes"] < 0.6 * r["source_bytes"]


def test_head_tail_walk_stops_at_trained_layers(yolo):
    model = onnx.load(yolo)
    tail = set(quant.head_tail_nodes(model))
    ops = {n.name: n for n in model.graph.node}
    out_node = next(n for n in model.graph.node if "output0" in n.output)
    assert out_node.name in tail
    assert "/model.22/dfl/conv/Conv" in tail and "/model.22/Sigmoid" in tail  # DFL and class sigmoid
    trained = [n for n in tail if ops[n].op_type == "Conv" and "dfl" not in n]
    assert not trained and len(tail) < 0.2 * len(ops)
    last = quant.head_output_layers(model, sorted(tail))  # the head's last 1x1 convs, both branches, 3 scales
    assert last == sorted(f"/model.22/cv{b}.{i}/cv{b}.{i}.2/Conv" for b in (2, 3) for i in range(3))


def test_int8_with_head_excluded_agrees(tmp_path, yolo, photos):
    out = tmp_path / "y8.onnx"
    r = finish_onnx(yolo, str(out), precision="int8", calib=photos, verify_images=photos)
    assert r["f1"] >= 0.9 and r["ref_boxes"] >= 10 and r["excluded_nodes"]
    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert r["bytes"] < 0.35 * r["source_bytes"]


def test_stem_block_is_found_and_bounded(yolo):
    """The first conv and its SiLU stay float; a graph without a trained layer near the input has no stem."""
    import onnx.helper as oh

    from edgerun.export.quant import stem_nodes

    assert stem_nodes(onnx.load(yolo)) == ["/model.0/conv/Conv", "/model.0/act/Sigmoid", "/model.0/act/Mul"]
    x = oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    y = oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    chain = [oh.make_node("Relu", [f"t{i}" if i else "x"], [f"t{i + 1}" if i < 29 else "y"], name=f"r{i}")
             for i in range(30)]
    assert stem_nodes(oh.make_model(oh.make_graph(chain, "g", [x], [y]))) == []


def test_int8_without_head_exclusion_fails_the_gate(tmp_path, yolo, photos):
    """The known 0-confidence int8 YOLO: one scale for boxes and scores (the graph's decode tail kept,
    ``head="graph"``). The gate must refuse it."""
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match="F1 0.000"):
        finish_onnx(yolo, str(out), precision="int8", calib=photos, verify_images=photos, exclude_head=False,
                    head="graph")
    assert not out.exists() and not _leftovers(tmp_path)


# -- the gate --------------------------------------------------------------------------------------
def _broken_fp16(model):
    """fp16 conversion that also corrupts the largest weight (a bad converter)."""
    biggest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    w = onnx.numpy_helper.to_array(biggest)
    rng = np.random.default_rng(0)
    biggest.CopyFrom(onnx.numpy_helper.from_array(rng.permutation(w.ravel()).reshape(w.shape), biggest.name))
    from onnxruntime.transformers.float16 import convert_float_to_float16
    return convert_float_to_float16(model, keep_io_types=True)


def test_gate_refuses_broken_model_and_leaves_no_file(tmp_path, monkeypatch):
    out = tmp_path / "d.onnx"
    out.write_bytes(b"previous")
    monkeypatch.setattr(quant, "to_fp16", _broken_fp16)
    with pytest.raises(ExportError, match="verification failed"):
        finish_onnx(DEMO_ONNX, str(out), precision="fp16")
    assert out.read_bytes() == b"previous" and not _leftovers(tmp_path)


def test_duplicates_at_the_nms_iou_are_borderline_not_disagreements():
    """A box NMS kept by a hair (IoU 0.69 with a stronger matched box, NMS at 0.7) may be gone in the other
    model (fp16 moves such IoUs by up to 0.01): borderline. The same box at IoU 0.6 is a disagreement."""
    from edgerun.export.verify import _agree
    from edgerun.runtime.results import Detections

    def det(*rows):
        a = np.array(rows, np.float32)
        return Detections(a[:, :4], a[:, 4], a[:, 5].astype(np.int64))

    strong, dup, far = (0, 0, 100, 100, 0.9, 0), (0, 0, 100, 69, 0.5, 0), (0, 0, 100, 60, 0.5, 0)
    assert _agree(det(strong, dup), det(strong), 0.9, 0.3, 0.68) == (1, 1, 1, 1)  # matched, borderline, counted
    assert _agree(det(strong, far), det(strong), 0.9, 0.3, 0.68) == (1, 0, 2, 1)


def test_impossible_threshold_fails_unless_forced(tmp_path):
    out = tmp_path / "d.onnx"
    with pytest.raises(ExportError, match="F1 1.000 < 1.01"):
        finish_onnx(DEMO_ONNX, str(out), min_f1=1.01)
    assert not out.exists() and not _leftovers(tmp_path)
    r = finish_onnx(DEMO_ONNX, str(out), min_f1=1.01, force=True)
    assert r["forced"] and not r["ok"] and out.exists()


# -- errors ----------------------------------------------------------------------------------------
def test_int8_needs_calibration_images(tmp_path):
    with pytest.raises(ExportError, match="calib"):
        finish_onnx(DEMO_ONNX, str(tmp_path / "x.onnx"), precision="int8")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="no images"):
        finish_onnx(DEMO_ONNX, str(tmp_path / "x.onnx"), precision="int8", calib=str(tmp_path / "empty"))
    with pytest.raises(ExportError, match="not a readable directory"):
        finish_onnx(DEMO_ONNX, str(tmp_path / "x.onnx"), precision="int8", calib=str(tmp_path / "nope"))


def test_verification_images_must_exist(tmp_path):
    with pytest.raises(ExportError, match="--verify-images"):
        finish_onnx(DEMO_ONNX, str(tmp_path / "x.onnx"), verify_images=str(tmp_path / "nope"))
    with pytest.raises(ExportError, match="--verify-images: cannot read"):
        finish_onnx(DEMO_ONNX, str(tmp_path / "x.onnx"), verify_images=[str(tmp_path / "missing.jpg")])


def test_bad_precision_and_requantizing_are_refused(tmp_path):
    with pytest.raises(ExportError, match="precision"):
        finish_onnx(DEMO_ONNX, str(tmp_path / "x.onnx"), precision="int4")
    int8dyn = str(shared_file("models", "yolov8n_640_int8dyn.onnx"))
    with pytest.raises(ExportError, match="already reduced precision"):
        finish_onnx(int8dyn, str(tmp_path / "x.onnx"), precision="fp16")


def test_hostile_external_data_is_refused_before_loading(tmp_path):
    model = onnx.load(DEMO_ONNX)
    t = model.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = onnx.TensorProto.EXTERNAL
    t.external_data.add(key="location", value="../../../etc/passwd")
    path = tmp_path / "hostile.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelError, match="outside the model's folder"):
        finish_onnx(str(path), str(tmp_path / "x.onnx"))


# -- CLI -------------------------------------------------------------------------------------------
def test_cli_export(tmp_path, capsys):
    from edgerun.runtime.cli import main

    out = tmp_path / "d16.onnx"
    assert main(["export", DEMO_ONNX, "-o", str(out), "--half"]) == 0
    assert out.exists() and "F1 @IoU0.9" in capsys.readouterr().out
    assert main(["export", DEMO_ONNX, "-o", str(tmp_path / "x.onnx"), "--int8"]) == 2
    assert "--calib" in capsys.readouterr().err
    assert main(["export", DEMO_ONNX, "-o", str(tmp_path / "x.onnx"), "--min-f1", "1.5"]) == 2
    assert not (tmp_path / "x.onnx").exists()


def test_no_torch_import():
    code = ("import sys; from edgerun.runtime.cli.args import build_parser; build_parser(); "
            "import edgerun.export.finish; "
            "import edgerun.export.cli; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- meaningful verification, never destroying -----------------------------------------------------
def test_nothing_found_is_not_verified_never_pass(tmp_path, capsys):
    """0 reference boxes: "not verified", not PASS; a failure only when a gate was asked for."""
    blank = tmp_path / "blank"
    blank.mkdir()
    cv2.imwrite(str(blank / "gray.png"), np.full((240, 320, 3), 114, np.uint8))
    r = finish_onnx(DEMO_ONNX, str(tmp_path / "a.onnx"), precision="fp16", verify_images=str(blank),
                    require_verified=False)
    assert r["ok"] and not r["verified"] and "PASS" not in r["table"] and "NOT VERIFIED" in r["table"]
    with pytest.raises(ExportError, match="not verified"):
        finish_onnx(DEMO_ONNX, str(tmp_path / "b.onnx"), precision="fp16", verify_images=str(blank))
    assert not (tmp_path / "b.onnx").exists() and not _leftovers(tmp_path)

    from edgerun.runtime.cli import main
    assert main(["export", DEMO_ONNX, "-o", str(tmp_path / "c.onnx"), "--half", "--verify-images", str(blank)]) == 2
    assert "not verified" in capsys.readouterr().err and not (tmp_path / "c.onnx").exists()


def test_output_gets_the_umask_mode_and_existing_files_need_force(tmp_path, capsys):
    from edgerun.runtime.cli import main

    old = os.umask(0o027)
    try:
        out = tmp_path / "d.onnx"
        assert main(["export", DEMO_ONNX, "-o", str(out)]) == 0
        assert out.stat().st_mode & 0o777 == 0o640  # 0o666 & ~umask, not mkstemp's 0600
    finally:
        os.umask(old)
    capsys.readouterr()
    before = out.read_bytes()
    assert main(["export", DEMO_ONNX, "-o", str(out), "--half"]) == 2
    assert "--force" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["export", DEMO_ONNX, "-o", str(out), "--half", "--force"]) == 0 and out.read_bytes() != before


def test_int8_holds_out_calibration_images_and_skips_unreadable_ones(tmp_path):
    calib = write_scenes(tmp_path / "calib", 12)
    (calib / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    r = finish_onnx(DEMO_ONNX, str(tmp_path / "d8.onnx"), precision="int8", calib=str(calib))
    held = set(r["verify_files"])
    assert r["verified"] and r["ok"] and len(held) == 3 - ("broken" in r["verify_from"])
    assert held.isdisjoint(r["calib_files"]) and "held out" in r["verify_from"]
    assert r["calib_skipped"] + ("unreadable" in r["verify_from"]) == 1  # counted wherever it landed
    assert r["calib_images"] == len(r["calib_files"]) - r["calib_skipped"]


def test_cli_int8_with_only_calib_is_verified_on_held_out_photos(tmp_path, yolo, capsys):
    """The issue's new-user run: `--int8 --calib coco128/images/train2017`, no other option."""
    from edgerun.runtime.cli import main

    coco = shared_file("datasets", "coco128", "images", "train2017")
    out = tmp_path / "y8.onnx"
    assert main(["export", yolo, "-o", str(out), "--int8", "--calib", str(coco)]) == 0
    text = capsys.readouterr().out
    assert "16 images from --calib (held out)" in text and "PASS" in text and "32 calibration images" in text


def test_val_reports_coco_map_of_source_and_result(tmp_path, yolo):
    from edgerun.export.val import label_path

    if not any(importlib.util.find_spec(m) for m in ("faster_coco_eval", "pycocotools")):
        pytest.skip("--val needs a COCO evaluator (faster-coco-eval or pycocotools: the `export` extra)")

    coco = shared_file("datasets", "coco128")
    assert label_path(str(coco / "images" / "train2017" / "a.jpg")) == str(coco / "labels" / "train2017" / "a.txt")
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for name in sorted(os.listdir(coco / "images" / "train2017"))[:8]:
        stem = os.path.splitext(name)[0]
        os.symlink(coco / "images" / "train2017" / name, tmp_path / "images" / name)
        if (coco / "labels" / "train2017" / f"{stem}.txt").exists():
            os.symlink(coco / "labels" / "train2017" / f"{stem}.txt", tmp_path / "labels" / f"{stem}.txt")
    r = finish_onnx(yolo, str(tmp_path / "y16.onnx"), precision="fp16", verify_images=str(tmp_path / "images"),
                    val=str(tmp_path))
    v = r["val"]
    assert v["images"]["count"] == 8 and v["images"]["boxes"] > 20 and "mAP50-95" in r["table"]
    assert 0.2 < v["source"]["map50_95"] < v["source"]["map50"] <= 1.0
    assert abs(v["result"]["map50_95"] - v["source"]["map50_95"]) < 0.01  # fp16 keeps accuracy


def test_val_without_an_evaluator_names_the_install(monkeypatch, tmp_path):
    from edgerun.export import val

    for mod in ("faster_coco_eval", "pycocotools", "pycocotools.coco", "pycocotools.cocoeval"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(ExportError, match="pip install faster-coco-eval"):
        val.coco_map({"m": DEMO_ONNX}, str(tmp_path))
