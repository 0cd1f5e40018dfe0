"""``--head raw`` on Ultralytics' own exports: the cut file through edgerun gives ``YOLO(model.onnx).predict``.

``export/rawhead.py`` cuts the decode tail (DFL softmax, dist2bbox, sigmoid, concat) out of a YOLOv8/YOLO11
detect graph and edgerun decodes the raw head (``decode(head="dfl")``). Here that is checked against
Ultralytics itself, on what Ultralytics 8.4 writes today: ``ultra_zoo``'s yolov8n and yolo11n detectors
(``nms=None`` and ``nms=False``, static 640 and ``dynamic=True``, where both sides letterbox to the minimal
stride-aligned rectangle, so the number of anchors differs per image) and the trained fall-detection YOLOv8s
checkpoint of ../shared. Each Ultralytics ONNX is finished with ``finish_onnx(src, out, head="raw")`` (fp32)
and edgerun on the cut file must find the objects ``YOLO(src).predict`` finds on the tall bus.jpg and the wide
zidane.jpg (class, IoU >= 0.95, confidence within 0.01: ``ultra_zoo.assert_same``). Dynamic exports also run
two frames in one batched ORT call. One int8 ``export_checkpoint`` (head "auto" -> raw) must pass its
checkpoint gate.
"""
from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest

from conftest import shared_file
from ultra_zoo import assert_same, compare, mode_name, objects_of, ultra_predict

pytest.importorskip("ultralytics", reason="needs the ultralytics extra (CI's export lane)")

MODELS = ("yolov8n", "yolo11n")
PHOTOS = ("bus.jpg", "zidane.jpg")
MIN_OBJECTS = 2
TABLE: list[dict] = []  # figures of every case, printed at the end of the module


def _cut(src, folder):
    """``finish_onnx(src, head="raw")`` verified on the two photos; asserts what the cut left."""
    from edgerun.export import finish_onnx
    from edgerun.export.rawhead import OUTPUT

    out = folder / f"{src.stem}_rawhead.onnx"
    report = finish_onnx(str(src), str(out), head="raw", verify_images=[str(shared_file("images", p)) for p in PHOTOS])
    assert report["ok"] and report["f1"] == 1.0, report["table"]
    assert report["raw_head"]["strides"] == [8, 16, 32] and report["raw_head"]["reg_max"] == 16, report["raw_head"]
    m, before = onnx.load(str(out)), onnx.load(str(src))
    assert [o.name for o in m.graph.output] == [OUTPUT]
    assert not any("/dfl/" in n.name for n in m.graph.node)
    softmax = [sum(n.op_type == "Softmax" for n in g.graph.node) for g in (before, m)]
    assert softmax[1] == softmax[0] - 1, softmax  # the DFL's; YOLO11's attention (C2PSA) keeps its own
    return out


def _check(src, raw, what: str, dynamic: bool):
    from edgerun.runtime import open_model

    model = open_model(str(raw))
    assert model.spec.head == "dfl" and model.spec.dynamic_hw == dynamic, (what, model.spec)
    frames = {}
    for name in PHOTOS:
        photo = shared_file("images", name)
        frame = frames[name] = cv2.imread(str(photo))
        g = model.geometry(frame)
        assert ((g.dst_h, g.dst_w) != (640, 640)) == dynamic, (what, name, g)  # rect letterbox: N per image
        f = compare(ultra_predict(src, photo), objects_of(model.run(frame)))
        TABLE.append({"case": what, "image": name, **f})
        assert_same(f, min_objects=MIN_OBJECTS, what=f"{what} {name}")
    return model, frames


def _batched_same(model, frames, flipped_path, src, what):
    """Two frames of one geometry in one ORT run (batch axis of the cut graph): each as Ultralytics sees it."""
    bus = frames["bus.jpg"]
    batch = model.run_batch([bus, cv2.imread(str(flipped_path))])
    for photo, r in zip((shared_file("images", "bus.jpg"), flipped_path), batch):
        f = compare(ultra_predict(src, photo), objects_of(r))
        TABLE.append({"case": f"{what} batch 2", "image": photo.name, **f})
        assert_same(f, min_objects=MIN_OBJECTS, what=f"{what} batch {photo.name}")


@pytest.fixture(scope="module")
def flipped_bus(tmp_path_factory):
    """bus.jpg mirrored: the same letterbox geometry, other content (a batch of two distinct frames)."""
    path = tmp_path_factory.mktemp("flip") / "bus_flipped.png"
    cv2.imwrite(str(path), cv2.flip(cv2.imread(str(shared_file("images", "bus.jpg"))), 1))
    return path


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("nms", [None, False], ids=mode_name)
@pytest.mark.parametrize("name", MODELS)
def test_zoo_raw_head_matches_ultralytics(ultra_zoo, tmp_path, flipped_bus, name, nms, dynamic):
    src = ultra_zoo.export(name, nms=nms, dynamic=dynamic)
    what = f"{name} {mode_name(nms)}{' dynamic' if dynamic else ''}"
    model, frames = _check(src, _cut(src, tmp_path), what, dynamic)
    if dynamic:
        assert model.spec.dynamic_batch
        _batched_same(model, frames, flipped_bus, src, what)


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_trained_checkpoint_raw_head_matches_ultralytics(ultra_zoo, tmp_path, dynamic):
    """The fine-tuned 2-class YOLOv8s of ../shared (a DFL detector users train), exported by Ultralytics."""
    pt = shared_file("torch", "yolov8s_fall_best.pt")
    src = ultra_zoo.export_checkpoint(pt, ultra_zoo.folder / f"trained-fall_raw{'_dyn' if dynamic else ''}.onnx",
                                      dynamic=dynamic)
    _check(src, _cut(src, tmp_path), f"yolov8s_fall_best.pt{' dynamic' if dynamic else ''}", dynamic)


def test_in_graph_nms_is_refused_by_name(ultra_zoo, tmp_path):
    """``nms=True`` puts NMS in the graph (an end2end output): nothing to cut, and ``head="raw"`` says so."""
    from edgerun.export import ExportError, finish_onnx

    src = ultra_zoo.export("yolov8n", nms=True)
    with pytest.raises(ExportError, match="--head raw needs an Ultralytics DFL detection head"):
        finish_onnx(str(src), str(tmp_path / "x.onnx"), head="raw", verify_images=[])
    assert not (tmp_path / "x.onnx").exists()


def test_int8_checkpoint_export_gets_the_raw_head_and_passes_its_gate(tmp_path):
    """``export_checkpoint(..., precision="int8")`` at its defaults (640, dynamic, 32 calibration images, head
    "auto"): the DFL tail of Ultralytics' export is cut, and the result passes the checkpoint gate (box F1
    >= 0.9 against ``YOLO(pt).predict``) on ../shared's odd-sized photos. Measured: F1 0.981 (25 boxes);
    0.941 with 24 or 48 calibration images. The same export with head "graph" gave the same gate figures at
    every setting tried: the int8 rounding decides them, not the cut."""
    from edgerun.export.ultra import export_checkpoint
    from edgerun.runtime import Detector

    out = tmp_path / "fall_int8.onnx"
    report = export_checkpoint(str(shared_file("torch", "yolov8s_fall_best.pt")), str(out), precision="int8",
                               calib=str(shared_file("datasets", "coco128", "images", "train2017")),
                               verify_images=str(shared_file("images-odd")))
    gate = report["checkpoint_gate"]
    assert report["raw_head"] is not None and report["raw_head"]["strides"] == [8, 16, 32], report["raw_head"]
    assert report["ok"] and gate["ok"] and gate["verified"], (report["problems"], gate)
    assert sum(g["ref_boxes"] for g in gate["by_shape"].values()) >= 10, gate["by_shape"]
    det = Detector.from_path(str(out))
    assert det.spec.head == "dfl" and det.spec.dynamic_hw
    for shape, g in gate["by_shape"].items():
        TABLE.append({"case": "yolov8s_fall_best.pt int8 gate", "image": f"{g['images']} {shape} images-odd",
                      "ref": g["ref_boxes"], "matched": g["matched"], "f1": g["f1"], "max_iou_deficit": np.nan,
                      "max_conf_diff": g["max_conf_diff"]})


@pytest.fixture(scope="module", autouse=True)
def _print_table():
    yield
    if TABLE:
        print("\ncase | image | ref | matched | max 1-IoU | max conf diff")
        for r in TABLE:
            extra = f" | F1 {r['f1']:.3f}" if "f1" in r else ""
            print(f"{r['case']} | {r['image']} | {r['ref']} | {r['matched']} | {r['max_iou_deficit']:.2e} | "
                  f"{r['max_conf_diff']:.2e}{extra}")
