"""The head is read from Ultralytics' metadata (task, end2end, args.nms, kpt_shape), shapes only as a fallback.

Metadata and output shapes below are exactly what Ultralytics 8.4.190's exporter writes for each task x nms
mode (checked against real exports in tests/export/test_ultra_tasks.py)."""
from __future__ import annotations

import numpy as np
import pytest

from edgerun.runtime.session import TensorInfo
from edgerun.runtime.spec import resolve_spec

INP = [TensorInfo("images", (1, 3, 640, 640), np.float32)]
PROTOS = TensorInfo("output1", (1, 32, 160, 160), np.float32)
NAMES80 = str({i: f"c{i}" for i in range(80)})
NAMES15 = str({i: f"c{i}" for i in range(15)})


def _meta(task, end2end, nms, names=NAMES80, **extra):
    m = {"task": task, "end2end": str(end2end), "names": names, "imgsz": "[640, 640]", "stride": "32",
         "args": str({"batch": 1, "nms": nms, "dynamic": False})}
    return {**m, **extra}


def _out(*shape):
    return TensorInfo("output0", shape, np.float32)


# (task, Ultralytics end2end, args.nms, outputs, expected head, expected task)
CASES = [
    ("detect", False, None, [_out(1, 84, 8400)], "yolov8", "detect"),
    ("detect", True, False, [_out(1, 300, 6)], "end2end", "detect"),
    ("detect", False, True, [_out(1, 300, 6)], "end2end", "detect"),
    ("segment", False, None, [_out(1, 116, 8400), PROTOS], "yolov8", "segment"),
    ("segment", True, False, [_out(1, 300, 38), PROTOS], "end2end", "segment"),
    ("segment", False, True, [_out(1, 300, 38), PROTOS], "end2end", "segment"),
    ("pose", False, None, [_out(1, 56, 8400)], "yolov8", "pose"),
    ("pose", True, False, [_out(1, 300, 57)], "end2end", "pose"),
    ("pose", False, True, [_out(1, 300, 57)], "end2end", "pose"),
    ("obb", False, None, [_out(1, 20, 8400)], "obb", "obb"),
    ("obb", True, False, [_out(1, 300, 7)], "end2end", "obb"),
    ("obb", False, True, [_out(1, 300, 7)], "end2end", "obb"),
]


@pytest.mark.parametrize("task,e2e,nms,outputs,head,want_task", CASES)
def test_head_from_ultralytics_metadata(task, e2e, nms, outputs, head, want_task):
    names = NAMES15 if task == "obb" else str({0: "person"}) if task == "pose" else NAMES80
    extra = {"kpt_shape": "[17, 3]"} if task == "pose" else {}
    spec = resolve_spec(_meta(task, e2e, nms, names, **extra), INP, outputs)
    assert (spec.head, spec.task, spec.end2end) == (head, want_task, head == "end2end")
    assert "head" not in spec.guessed and "task" not in spec.guessed and "end2end" not in spec.guessed
    assert spec.source.get("nms", "absent") == nms


def test_post_processed_segment_without_metadata_is_not_yolov5():
    """(1, 300, 38) + (1, 32, h, w) used to be read as a YOLOv5 head of 33 classes."""
    spec = resolve_spec({}, INP, [_out(1, 300, 38), PROTOS])
    assert (spec.head, spec.task, spec.end2end) == ("end2end", "segment", True)
    assert {"head", "task", "end2end"} <= set(spec.guessed)


def test_post_processed_pose_and_obb_fallbacks():
    pose = resolve_spec({"kpt_shape": "[17, 3]"}, INP, [_out(1, 300, 57)])
    assert (pose.head, pose.task) == ("end2end", "pose")
    obb = resolve_spec({}, INP, [_out(1, 300, 7)], {"task": "obb"})
    assert obb.head == "end2end"
    raw_obb = resolve_spec({}, INP, [_out(1, 20, 8400)], {"task": "obb"})
    assert (raw_obb.head, raw_obb.num_classes) == ("obb", 15)


def test_end2end_false_and_nms_none_stay_raw():
    """An 8.4 default export of YOLO26 (one-to-many head) says end2end False and nms None: NMS runs here."""
    spec = resolve_spec(_meta("detect", False, None), INP, [_out(1, 84, 8400)])
    assert (spec.head, spec.end2end) == ("yolov8", False) and "end2end" not in spec.guessed
