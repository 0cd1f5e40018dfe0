"""Every Ultralytics 8.4 detect / segment / pose / obb export runs in edgerun as Ultralytics runs it.

Models come from ``ultra_zoo`` (Ultralytics' own yamls, seeded with ../shared's trained weights, exported by
Ultralytics' exporter with ``nms=None`` (raw one-to-many head), ``nms=False`` (YOLO26: the NMS-free
one-to-one head; YOLOv8/11: the same raw head) and ``nms=True`` (NMS in the graph), static and
``dynamic=True``). Each export is run by ``YOLO(model.onnx).predict`` and by edgerun (``open_model(...).run()``,
and ``edgerun predict --json`` for one mode per model) on a square and a wide real photo; the objects must
be the same (class, IoU >= 0.95, confidence within 0.01), OBB corners and keypoints within 1 px, masks
IoU >= 0.95, and each image must give at least a few objects so a wrong decode cannot pass.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import pytest

from conftest import shared_file
from ultra_zoo import ENTRIES, assert_same, compare, mode_name, objects_of, objects_of_records, ultra_predict

pytest.importorskip("ultralytics", reason="needs the ultralytics extra (CI's export lane)")

MODELS = ("yolov8n", "yolov8n-seg", "yolo11n-pose", "yolo11n-obb", "yolo26n", "yolo26n-seg", "yolo26n-pose",
          "yolo26n-obb")
# photos per task: tall bus.jpg and wide zidane.jpg; OBB models look at the square aerial tile and a wide
# (1024x576) centre crop of the other one, written by the ``wide_aerial`` fixture
PHOTOS = {"obb": (("images-aerial", "aerial_courts_640.jpg"), ("images-aerial", "aerial_railyard_1024.png")),
          None: (("images", "bus.jpg"), ("images", "zidane.jpg"))}
WIDE_AERIAL: list = []
MIN_OBJECTS = 2
TABLE: list[dict] = []  # figures of every case, printed at the end of the module (the issue's table)


@pytest.fixture(scope="module", autouse=True)
def wide_aerial(tmp_path_factory):
    """A wide aerial photo: the railyard tile's centre 1024x576 (rect letterboxing differs from square)."""
    src = cv2.imread(str(shared_file(*PHOTOS["obb"][1])))
    h = src.shape[0]
    path = tmp_path_factory.mktemp("aerial") / "aerial_railyard_wide.png"
    cv2.imwrite(str(path), src[(h - 576) // 2:(h - 576) // 2 + 576, :1024])
    WIDE_AERIAL[:] = [path]
    return path


def _photos(task: str):
    if task == "obb":
        return [shared_file(*PHOTOS["obb"][0]), *WIDE_AERIAL]
    return [shared_file(*p) for p in PHOTOS[None]]


def _check(path, task, what):
    from edgerun.runtime import open_model

    model = open_model(str(path))
    assert model.spec.task == task, (what, model.spec.task, model.spec.guessed)
    rows = []
    for photo in _photos(task):
        ref = ultra_predict(path, photo)
        ours = objects_of(model.run(cv2.imread(str(photo))))
        f = compare(ref, ours)
        rows.append({"case": what, "image": photo.name, **f})
        assert_same(f, min_objects=MIN_OBJECTS, what=f"{what} {photo.name}")
    TABLE.extend(rows)
    return rows


@pytest.mark.parametrize("nms", [None, False, True], ids=mode_name)
@pytest.mark.parametrize("name", MODELS)
def test_static_export_matches_ultralytics(ultra_zoo, name, nms):
    path = ultra_zoo.export(name, nms=nms)
    _check(path, ENTRIES[name].task, f"{name} {mode_name(nms)}")


@pytest.mark.parametrize("nms", [None, False, True], ids=mode_name)
@pytest.mark.parametrize("name", MODELS)
def test_dynamic_export_matches_ultralytics(ultra_zoo, name, nms):
    """dynamic=True: both sides letterbox to the minimal stride-aligned rectangle."""
    path = ultra_zoo.export(name, nms=nms, dynamic=True)
    _check(path, ENTRIES[name].task, f"{name} {mode_name(nms)} dynamic")


@pytest.mark.parametrize("model,task", [("yolov8n-seg_320_fp32dq.onnx", "segment"),
                                        ("yolo11n-pose_640_fp32.onnx", "pose")])
def test_trained_shared_onnx_matches_ultralytics(model, task):
    """The trained models of ../shared that cover a task, as they are (raw one-to-many heads)."""
    _check(shared_file("models", model), task, f"shared {model}")


@pytest.mark.parametrize("nms", [None, False, True], ids=mode_name)
def test_trained_pose_checkpoint_exports_match_ultralytics(ultra_zoo, nms):
    """The official yolo11n-pose.pt (trained) exported by Ultralytics in each nms mode."""
    pt = shared_file("torch", "yolo11n-pose.pt")
    path = ultra_zoo.export_checkpoint(pt, ultra_zoo.folder / f"trained-yolo11n-pose_{mode_name(nms)}.onnx", nms=nms)
    _check(path, "pose", f"yolo11n-pose.pt {mode_name(nms)}")


@pytest.mark.parametrize("name,nms", [("yolo26n-seg", False), ("yolo26n-pose", True), ("yolo11n-obb", None),
                                      ("yolo26n-obb", False)])
def test_cli_json_matches_ultralytics(ultra_zoo, name, nms):
    """``edgerun predict --json`` prints the same objects (boxes, classes, corners, keypoints)."""
    path = ultra_zoo.export(name, nms=nms)
    task = ENTRIES[name].task
    photos = _photos(task)
    out = subprocess.run([sys.executable, "-m", "edgerun.runtime.cli", "predict", str(path), *map(str, photos),
                          "--json"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    records = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(records) == len(photos), out.stdout[-2000:]
    for photo, rec in zip(photos, records):
        ref = ultra_predict(path, photo)
        ours = objects_of_records(rec["detections"])
        f = compare(ref, ours, masks=False)
        assert_same(f, min_objects=MIN_OBJECTS, what=f"cli {name} {mode_name(nms)} {photo.name}")
        if task == "obb":
            assert ours.corners is not None and ours.corners.shape == (len(ours), 4, 2)


def test_tracker_follows_obb_results(ultra_zoo):
    """The tracker takes OBB results: it tracks by their bounds and keeps the corners and angles."""
    from edgerun.runtime import ByteTracker, open_model

    model = open_model(str(ultra_zoo.export("yolo11n-obb")))
    image = cv2.imread(str(_photos("obb")[1]))
    tracker = ByteTracker(high_threshold=0.3, new_track_threshold=0.3)
    first = model.run(image)
    assert len(first) >= MIN_OBJECTS
    tracked = [tracker.update(model.run(image)) for _ in range(3)]
    last = tracked[-1]
    assert (last.tracker_id >= 1).sum() >= MIN_OBJECTS
    assert set(last.tracker_id[last.tracker_id >= 1]) <= set(tracked[0].tracker_id[tracked[0].tracker_id >= 1])
    assert last.data["xyxyxyxy"].shape == (len(last), 4, 2) and last.data["xywhr"].shape == (len(last), 5)
    assert (last.data["xyxyxyxy"] == first.data["xyxyxyxy"]).all()


def test_annotate_draws_rotated_boxes(ultra_zoo):
    """``annotate`` (``--save``, ``--view``) outlines OBB results along their corners, not their bounds."""
    import numpy as np

    from edgerun.runtime import open_model
    from edgerun.runtime.tasks.dispatch import annotate

    model = open_model(str(ultra_zoo.export("yolo11n-obb")))
    image = cv2.imread(str(_photos("obb")[0]))
    r = model.run(image)
    canvas = annotate(np.zeros_like(image), r, model.spec.names)
    pts = np.rint(r.data["xyxyxyxy"]).astype(int).reshape(-1, 2)
    h, w = image.shape[:2]
    inside = pts[(pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)]
    assert len(inside) >= 4 and (canvas[inside[:, 1], inside[:, 0]].max(1) > 0).all()


@pytest.fixture(scope="module", autouse=True)
def _print_table():
    yield
    if TABLE:
        print("\ncase | image | ref | matched | max IoU deficit | max conf diff | corner px | kpt px | min mask IoU")
        for r in TABLE:
            print(f"{r['case']} | {r['image']} | {r['ref']} | {r['matched']} | {r['max_iou_deficit']:.2e} | "
                  f"{r['max_conf_diff']:.2e} | {r.get('max_corner_px', '-')} | {r.get('max_kpt_px', '-')} | "
                  f"{r.get('min_mask_iou', '-')}")
