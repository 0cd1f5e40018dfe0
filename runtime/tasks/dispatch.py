"""``open_model``: one entry point that reads the model's spec and returns the right task object.

    m = open_model("yolo11n-pose.onnx")          # PoseDetector (task from metadata)
    m = open_model("mobilenetv2.onnx", top_k=3)  # Classifier (task guessed from the graph)
    m = open_model("x.onnx", task="detect")      # override the task
    m = open_model("face_detection_yunet.onnx")  # FaceDetector (YuNet's outputs are recognised)

Keyword arguments are split: task options (thresholds, ``top_k``, ``masks``) go to the task object,
everything else is a ModelSpec override (``input_size=...``, ``channel_order=...``).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from edgerun.kernels.errors import EdgerunValueError

from .classifier import Classifier
from .detector import Detector
from .face import FaceDetector
from .obb import ObbDetector
from .pose import COCO_SKELETON, PoseDetector
from ..results import Classifications, SemanticMask
from .segmenter import Segmenter
from .semantic import SemanticSegmenter
from ..session import Session
from ..spec import TASKS, fit_input_size, resolve_spec

__all__ = ["open_model", "annotate", "warmup_tasks", "TASK_CLASSES"]

# task name -> (class, the options its __init__ takes: the class's own OPTIONS)
TASK_CLASSES: dict[str, tuple[type, tuple[str, ...]]] = {
    task: (cls, cls.OPTIONS) for task, cls in (
        ("detect", Detector), ("pose", PoseDetector), ("segment", Segmenter), ("classify", Classifier),
        ("face", FaceDetector), ("semantic", SemanticSegmenter), ("obb", ObbDetector))}


def open_model(path: str, task: str | None = None, *, threads: int | None = None, spin: bool | str | None = None,
               providers: Sequence[str] | None = None, strict: bool = True, **kwargs: Any):
    """Open an ONNX model as the task object its spec names (or ``task``): Detector, PoseDetector,
    Segmenter, ObbDetector, Classifier, FaceDetector or SemanticSegmenter. Unknown task names raise ``EdgerunValueError`` listing the choices.
    Options that do not apply to the resolved task raise, or are dropped when ``strict=False``
    (the CLI passes its thresholds to every task)."""
    if task is not None and task not in TASK_CLASSES:
        supported = ", ".join(TASK_CLASSES)
        extra = f" ({task!r} is a known task not implemented yet)" if task in TASKS else ""
        raise EdgerunValueError(f"task: expected one of {supported}, got {task!r}{extra}")
    session = Session(str(path), threads=threads, spin=spin, providers=providers)
    options = {k: kwargs.pop(k) for k in list(kwargs) if k in _all_options()}
    if task is not None:
        kwargs.setdefault("task", task)
    spec = resolve_spec(session.metadata, session.inputs, session.outputs, kwargs)  # head: spec.TASK_HEADS
    if spec.task not in TASK_CLASSES:
        raise EdgerunValueError(f"{path}: task {spec.task!r} is not supported yet; pass task= one of "
                                f"{', '.join(TASK_CLASSES)}")
    session, spec = fit_input_size(session, spec)
    cls, names = TASK_CLASSES[spec.task]
    if spec.task == "face" and "input_size" in kwargs:  # an explicit size: run there, not natively
        options.setdefault("native", False)
    bad = set(options) - set(names)
    if bad and not strict:
        options, bad = {k: v for k, v in options.items() if k in names}, set()
    if bad:
        raise EdgerunValueError(f"options {sorted(bad)} do not apply to task {spec.task!r} "
                                f"({cls.__name__} takes {', '.join(names)})")
    return cls(session, spec, **options)


def annotate(image: np.ndarray, result, names: tuple[str, ...] = ()) -> np.ndarray:
    """Draw any task's result on a BGR image in place: boxes, masks, keypoints, landmarks, top-k."""
    from edgerun.kernels import annotate as ann
    from edgerun.kernels.draw import draw_boxes

    if isinstance(result, SemanticMask):
        return ann.draw_label_map(image, result.label_map)
    if isinstance(result, Classifications):
        lines = [f"{names[c] if c < len(names) else c} {p:.3f}" for c, p in
                 zip(result.class_id.tolist(), result.confidence.tolist())]
        return ann.draw_text_lines(image, lines)
    if result.mask is not None:
        ann.draw_masks(image, result.mask, result.class_id)
    draw_boxes(image, result.xyxy, result.class_id, result.confidence, names=names)
    if "keypoints" in result.data:
        k = result.data["keypoints"]
        skeleton = COCO_SKELETON if k.shape[1] == 17 else ()
        ann.draw_keypoints(image, k, result.data.get("keypoint_confidence"), skeleton)
    if "landmarks" in result.data:
        ann.draw_landmarks(image, result.data["landmarks"])
    return image


def _all_options() -> set[str]:
    return {n for _, names in TASK_CLASSES.values() for n in names}


def warmup_tasks() -> int:
    """Compile (or load from cache) the task kernels' signatures the runtime uses; returns the count.
    (``edgerun warmup`` covers the detection kernels; this covers classify/pose/segment/face/semantic.)"""
    from edgerun.kernels.faces import decode_yunet, pad_chw
    from edgerun.kernels.keypoints import gather_keypoints, scale_points
    from edgerun.kernels.masks import process_masks
    from edgerun.kernels.preprocess import plan
    from edgerun.kernels.topk import argmax_map, softmax, topk

    geo = plan(16, 16, 32)
    topk(softmax(np.zeros(10, np.float32)), 5)
    argmax_map(np.zeros((4, 4, 3), np.float32))
    for dtype in (np.float32, np.float16):
        gather_keypoints(np.zeros((1, 56, 8), dtype), np.zeros(1, np.int64), geo, first_row=5, num_keypoints=17)
    scale_points(np.zeros((1, 5, 2), np.float32), geo)
    boxes = np.array([[0, 0, 8, 8]], np.float32)
    for mode in ("full", "proto"):
        process_masks(np.zeros((2, 8, 8), np.float32), np.zeros((1, 2), np.float32), boxes, geo, mode=mode)
    lv = [np.zeros((1, n, 1), np.float32) for n in (16, 4, 1)]
    decode_yunet(lv, lv, [np.zeros((1, n, 4), np.float32) for n in (16, 4, 1)],
                 [np.zeros((1, n, 10), np.float32) for n in (16, 4, 1)], input_hw=(32, 32))
    pad_chw(np.zeros((4, 4, 3), np.uint8), np.zeros((3, 32, 32), np.float32))
    return 10
