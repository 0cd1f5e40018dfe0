"""The bundled demo detector: scene generator, shipped model, metadata, training + export checks."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from edgerun.export.demo_data import EVAL_SEED_BASE, letterbox, random_scene_size
from edgerun.export.metrics import average_precision, box_iou, mean_average_precision
from edgerun.runtime.demo import CLASS_NAMES, make_scene, sample_scene_path, write_sample_video

RUNTIME_DIR = os.path.dirname(importlib.util.find_spec("edgerun.runtime").origin)
DEMO_ONNX = os.path.join(RUNTIME_DIR, "data", "demo.onnx")
TEST_SEED_BASE = EVAL_SEED_BASE + 500_000  # neither training nor the trainer's own evaluation
HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (pip install torch==2.13.0, "
                                 "the CPU wheel); only the training/export checks need it")


# -- scene generator ------------------------------------------------------------------------------
def test_scene_is_deterministic():
    a, b = make_scene(123, (240, 320)), make_scene(123, (240, 320))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], make_scene(124, (240, 320))[0])


def test_scene_types_and_boxes():
    for seed in range(10):
        image, xyxy, cls = make_scene(seed, (200, 300))
        assert image.dtype == np.uint8 and image.shape == (200, 300, 3)
        assert xyxy.dtype == np.float32 and xyxy.shape == (len(cls), 4) and cls.dtype == np.int64
        assert 1 <= len(cls) and np.all((cls >= 0) & (cls < len(CLASS_NAMES)))
        assert np.all(xyxy[:, 2:] > xyxy[:, :2]) and np.all(xyxy >= 0)
        assert np.all(xyxy[:, [0, 2]] <= 300) and np.all(xyxy[:, [1, 3]] <= 200)


def test_scene_rejects_tiny_size():
    with pytest.raises(ValueError, match="size"):
        make_scene(0, (8, 8))


def test_sample_scene_path_writes_once(tmp_path):
    path = sample_scene_path(str(tmp_path))
    assert os.path.isfile(path) and path.endswith(".jpg")
    mtime = os.stat(path).st_mtime_ns
    assert sample_scene_path(str(tmp_path)) == path and os.stat(path).st_mtime_ns == mtime


def test_sample_scene_path_uses_cache_env(tmp_path, monkeypatch):
    from edgerun.kernels import cache_dir

    monkeypatch.setenv("EDGERUN_CACHE_DIR", str(tmp_path / "cache"))
    cache_dir.cache_clear()
    try:
        assert sample_scene_path().startswith(str(tmp_path / "cache"))
    finally:
        cache_dir.cache_clear()


def test_sample_video_roundtrip(tmp_path):
    import cv2

    path = str(tmp_path / "shapes.avi")
    truth = write_sample_video(path, frames=6, seed=3, size=(120, 160))
    cap = cv2.VideoCapture(path)
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert frames == 6 and len(truth) == 6
    assert not np.array_equal(truth[0][0], truth[-1][0])  # the shapes move


# -- metrics --------------------------------------------------------------------------------------
def test_average_precision_known_values():
    assert average_precision(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == pytest.approx(1.0)
    # TP, FP, TP over 2 GT: envelope 1.0 to r=0.5 then 2/3 to r=1.0
    ap = average_precision(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3]))
    assert ap == pytest.approx(0.5 + 1 / 3)


def test_map_perfect_and_duplicates():
    gt = [(np.array([[0, 0, 10, 10], [20, 20, 40, 40]], np.float32), np.array([0, 1]))]
    perfect = [(gt[0][0], np.array([0.9, 0.8], np.float32), np.array([0, 1]))]
    assert mean_average_precision(perfect, gt, 2)["map"] == pytest.approx(1.0)
    boxes = np.concatenate([gt[0][0], gt[0][0][:1]])
    dup = [(boxes, np.array([0.5, 0.8, 0.9], np.float32), np.array([0, 1, 0]))]
    res = mean_average_precision(dup, gt, 2)
    assert res["ap"][0] == pytest.approx(1.0)  # the lower-scored duplicate is an FP after the only TP
    assert box_iou(gt[0][0], gt[0][0]).diagonal() == pytest.approx([1.0, 1.0])


# -- the shipped model ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def detector():
    from edgerun.runtime.tasks.detector import Detector

    assert os.path.isfile(DEMO_ONNX), f"bundled demo model missing: {DEMO_ONNX}"
    return Detector.from_path(DEMO_ONNX, score_threshold=0.25, threads=1)


def test_demo_model_metadata_roundtrips(detector):
    spec = detector.spec
    assert spec.head == "yolov8" and spec.task == "detect"
    assert spec.input_size == (320, 320) and spec.names == CLASS_NAMES and spec.num_classes == len(CLASS_NAMES)
    assert spec.channel_order == "rgb" and spec.pad_value == 114 and spec.resize == "letterbox"
    assert spec.source.get("framework") == "torch"
    assert os.path.getsize(DEMO_ONNX) < 2 * 1024 * 1024


def test_demo_model_map50_on_fresh_scenes(detector):
    preds, truths = [], []
    for seed in range(TEST_SEED_BASE, TEST_SEED_BASE + 50):
        image, xyxy, cls = make_scene(seed, random_scene_size(np.random.default_rng([seed, 7])), max_objects=8)
        det = detector.detect(image)
        assert det.xyxy.dtype == np.float32 and det.xyxy.shape == (len(det), 4)
        preds.append((det.xyxy, det.confidence, det.class_id))
        truths.append((xyxy, cls))
    res = mean_average_precision(preds, truths, len(CLASS_NAMES))
    assert res["map"] >= 0.9, res


def test_demo_model_on_sample_scene(detector):
    import cv2

    image = cv2.imread(sample_scene_path())
    assert len(detector.detect(image)) >= 1


# -- training + export ----------------------------------------------------------------------------
@needs_torch
def test_train_demo_tiny_budget_exports(tmp_path):
    """The training script still runs end to end: 2 steps, export, verification, reload."""
    from edgerun.export import train_demo
    from edgerun.runtime.tasks.detector import Detector

    model = train_demo.train(steps=2, batch=2, fresh=1, log=None)
    report = train_demo.export_and_score(model, str(tmp_path / "tiny.onnx"), eval_scenes=2)
    assert report["ok"] and report["spec_roundtrip"] and report["output_shapes"] == [(1, 8, 2000)]
    det = Detector.from_path(str(tmp_path / "tiny.onnx"), threads=1)
    assert det.spec.names == CLASS_NAMES and det.spec.input_size == (320, 320)


@needs_torch
def test_export_verification_catches_mismatch(tmp_path):
    """Data-dependent Python control flow is traced down one branch; ORT then disagrees with torch."""
    import torch

    from edgerun.export.torch_export import ExportError, export_module
    from edgerun.runtime.spec import ModelSpec

    class Branchy(torch.nn.Module):
        def forward(self, x):
            y = x.mean(dim=(2, 3)).unsqueeze(-1).expand(-1, -1, 8)  # (1, 3, 8)
            head = torch.cat([y, y[:, :2]], dim=1)  # (1, 4 + 1 class, 8 cells)
            return head * 2 if float(x.mean()) > 0.5 else head * 3

    spec = ModelSpec(task="detect", head="yolov8", input_size=(8, 8), names=("a",), num_classes=1)
    low, high = np.full((1, 3, 8, 8), 0.2, np.float32), np.full((1, 3, 8, 8), 0.8, np.float32)
    with pytest.warns(torch.jit.TracerWarning), pytest.raises(ExportError, match="max abs error .* exceeds"):
        export_module(Branchy(), str(tmp_path / "b.onnx"), spec, (1, 3, 8, 8), verify_inputs=[high, low])
    report = export_module(Branchy(), str(tmp_path / "ok.onnx"), spec, (1, 3, 8, 8), verify_inputs=[high])
    assert report["ok"] and report["spec_roundtrip"] and report["max_error_ratio"] <= 1.0


def test_import_export_package_does_not_import_torch():
    code = ("import sys, edgerun.export, edgerun.export.torch_export, edgerun.export.train_demo, "
            "edgerun.runtime.demo; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_letterbox_matches_geometry():
    image = np.zeros((100, 200, 3), np.uint8)
    tensor, gain, pad = letterbox(image, (320, 320))
    assert tensor.shape == (3, 320, 320) and gain == pytest.approx(1.6) and pad == (0.0, 80.0)
    assert tensor[0, 0, 0] == pytest.approx(114 / 255) and tensor[0, 160, 160] == 0.0
