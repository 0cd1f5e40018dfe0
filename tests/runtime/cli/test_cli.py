"""The edgerun CLI: predict (images, directories, globs, videos, bad files), info, warmup."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import shared_file

from edgerun.runtime.cli import main


def _records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture
def model():
    return str(shared_file("models", "yolov8n_320_int8dyn.onnx"))


@pytest.fixture
def photo_dir(tmp_path):
    d = tmp_path / "photos with space é"
    d.mkdir()
    for name in ("bus.jpg", "zidane.jpg"):
        os.symlink(shared_file("images", name), d / name)
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (d / "notes.txt").write_text("ignored: not an image extension")
    return d


def test_predict_json_over_a_directory_with_a_corrupt_file(model, photo_dir, capsys):
    code = main(["predict", model, str(photo_dir), "--json"])
    cap = capsys.readouterr()
    recs = {os.path.basename(r["source"]): r for r in _records(cap.out)}
    assert code == 1  # documented: 1 = some inputs failed, the rest processed
    assert set(recs) == {"bus.jpg", "zidane.jpg", "corrupt.jpg"}
    assert "corrupt.jpg" in recs["corrupt.jpg"]["error"] and "corrupt.jpg" in cap.err
    bus = recs["bus.jpg"]
    assert (bus["width"], bus["height"], bus["frame"]) == (810, 1080, 0)
    assert {d["class_name"] for d in bus["detections"]} >= {"person", "bus"}
    assert set(bus["speed_ms"]) == {"preprocess", "inference", "postprocess"}
    det = bus["detections"][0]
    assert set(det) == {"xyxy", "confidence", "class_id", "class_name"} and len(det["xyxy"]) == 4


def test_predict_ultralytics_style_arguments_and_save(model, tmp_path, capsys):
    bus = shared_file("images", "bus.jpg")
    out = tmp_path / "out"
    code = main(["predict", f"model={model}", f"source={bus}", "conf=0.5", "--save", str(out)])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert "bus.jpg" in cap.out and "person" in cap.out
    saved = cv2.imread(str(out / "bus.jpg"))
    assert saved is not None and saved.shape == (1080, 810, 3)
    assert not np.array_equal(saved, cv2.imread(str(bus)))  # boxes were drawn


def test_predict_video_every_frame_and_glob(model, tmp_path, capsys):
    cap = cv2.VideoCapture(str(shared_file("video", "vtest.avi")))
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (768, 576))
    for _ in range(4):
        ok, frame = cap.read()
        writer.write(frame)
    writer.release()
    cap.release()
    code = main(["predict", model, str(tmp_path / "*.avi"), "--json", "--save", str(tmp_path / "o")])
    recs = _records(capsys.readouterr().out)
    assert code == 0
    assert [r["frame"] for r in recs] == [0, 1, 2, 3]
    assert all(r["width"] == 768 and r["detections"] for r in recs)
    v = cv2.VideoCapture(str(tmp_path / "o" / "clip.mp4"))
    assert int(v.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    v.release()


def test_predict_errors_are_clear(model, tmp_path, capsys):
    assert main(["predict", str(tmp_path / "missing.onnx"), "x.jpg"]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert main(["predict", model, str(tmp_path / "nothing.jpg")]) == 2
    assert "source not found" in capsys.readouterr().err


def test_info_reports_guessed_fields(capsys):
    assert main(["info", str(shared_file("models", "yolox_nano_416.onnx")), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["spec"]["head"] == "yolox" and "head" in rep["guessed"]
    assert rep["inputs"][0]["shape"] == [1, 3, 416, 416]


@pytest.mark.slow
def test_warmup_compiles_every_kernel(tmp_path):
    # `edgerun warmup` in a child with an empty kernel cache, then a second child runs every task,
    # several detection heads, camera formats and the tracker on that cache (tests/kernel_usage.py):
    # every kernel signature the runtime uses must load from the cache warmup wrote (no cache miss).
    from kernel_usage import DETECT_MODELS, TASK_MODELS

    for name in DETECT_MODELS + [m for m, _ in TASK_MODELS]:
        shared_file("models", name)
    env = {**os.environ, "EDGERUN_CACHE_DIR": str(tmp_path)}
    warm = subprocess.run([sys.executable, "-m", "edgerun.runtime.cli", "warmup"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert warm.returncode == 0 and "kernel signatures ready" in warm.stdout, warm.stderr[-3000:]
    written = {p.name.split("-")[0] for p in tmp_path.rglob("*.nbi")}  # <module>.<function>-<line>.py311.nbi
    use = subprocess.run([sys.executable, str(Path(__file__).parents[2] / "kernel_usage.py"), "cache"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert use.returncode == 0, use.stderr[-3000:]
    rep = json.loads(use.stdout)
    assert rep["cache_dir"].startswith(str(tmp_path))
    used = rep["kernels"]
    assert len(used) >= 15 and {"assign._hungarian_kernel", "topk._softmax_kernel"} <= set(used)
    assert set(used) <= written, "kernels the runtime used that warmup left out of the cache"
    assert not {k: v["misses"] for k, v in used.items() if v["misses"]}, "signatures warmup did not cache"
    assert all(v["hits"] for v in used.values())
