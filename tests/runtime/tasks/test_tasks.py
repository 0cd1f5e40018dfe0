"""open_model dispatch and `edgerun predict` on each task (task from the model, --task override)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared_file
from kernel_usage import TASK_MODELS

from edgerun.runtime import Detector, EdgerunValueError, ModelError, open_model
from edgerun.runtime.cli import main


def _records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_open_model_errors():
    path = str(shared_file("models", "yolov8n_320_int8dyn.onnx"))
    assert type(open_model(path)) is Detector
    with pytest.raises(EdgerunValueError, match="task: expected one of"):
        open_model(path, task="depth-of-field")
    with pytest.raises(ModelError, match="depth output"):  # a detector's (1, 84, 2100) is no depth map
        open_model(path, task="depth")
    with pytest.raises(EdgerunValueError, match="option 'top_k' does not apply to Detector"):
        open_model(path, top_k=3)


@pytest.mark.parametrize("model,key,check", [
    ("mobilenetv2_224_imagenet_int8.onnx", "classes", lambda r: [c["class_id"] for c in r[:2]] == [575, 654]),
    ("yolo11n-pose_640_fp32.onnx", "detections", lambda r: len(r) == 4 and len(r[0]["keypoints"]) == 17),
    ("yolov8n-seg_320_fp32dq.onnx", "detections", lambda r: {d["class_name"] for d in r} == {"bus", "person"}),
    # YuNet at native size (810x1080), as cv2.FaceDetectorYN after setInputSize: two faces (one at 640x640)
    ("face_detection_yunet_2023mar.onnx", "detections", lambda r: len(r) == 2 and len(r[0]["landmarks"]) == 5),
    ("deeplabv3_mnv2_pascalvoc_257.onnx", "classes", lambda r: {"bus", "person"} <= {c["class_name"] for c in r}),
])
def test_predict_json_picks_the_task(model, key, check, capsys, tmp_path):
    code = main(["predict", str(shared_file("models", model)), str(shared_file("images", "bus.jpg")),
                 "--json", "--save", str(tmp_path)])
    rec = _records(capsys.readouterr().out)[0]
    assert code == 0 and check(rec[key])
    assert (tmp_path / "bus.jpg").stat().st_size > 0


def test_predict_task_override(capsys):
    code = main(["predict", str(shared_file("models", "yolov8n-seg_320_fp32dq.onnx")),
                 str(shared_file("images", "bus.jpg")), "--task", "detect"])
    assert code == 0 and "bus" in capsys.readouterr().out


def test_warmup_tasks_compiles_every_task_kernel():
    # A child process starts with nothing compiled: it runs a Detector (the kernels `edgerun warmup`
    # covers), then warmup_tasks(), then every other task on a real model (tests/kernel_usage.py).
    # Every kernel a task uses beyond the Detector's must have been compiled by warmup_tasks() with
    # every signature the task then needs.
    for name, _ in TASK_MODELS:
        shared_file("models", name)
    out = subprocess.run([sys.executable, str(Path(__file__).parents[2] / "kernel_usage.py"), "tasks"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rep = json.loads(out.stdout)
    task_kernels = {k for k, sigs in rep["used"].items() if sigs and not rep["detection"][k]}
    assert {"topk._softmax_kernel", "masks._masks_proto_kernel", "faces._yunet_level"} <= task_kernels
    missed = {k: sorted(set(rep["used"][k]) - set(rep["warmed"][k])) for k in task_kernels}
    assert not {k: v for k, v in missed.items() if v}, "signatures the tasks compiled after warmup_tasks()"
    assert rep["count"] >= len(task_kernels)
