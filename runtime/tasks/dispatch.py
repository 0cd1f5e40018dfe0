"""``open_model``: one entry point that reads the model's spec and returns the right task object.

    m = open_model("yolo11n-pose.onnx")          # PoseDetector (task from metadata)
    m = open_model("mobilenetv2.onnx", top_k=3)  # Classifier (task guessed from the graph)
    m = open_model("x.onnx", task="detect")      # override the task
    m = open_model("face_detection_yunet.onnx")  # FaceDetector (YuNet's outputs are recognised)

Keyword arguments are split: task options (thresholds, ``top_k``, ``masks``) go to the task object,
session names and ModelSpec fields to ``ModelOptions`` (``input_size=...``); anything else is refused.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from edgerun.kernels.errors import EdgerunValueError

from .classifier import Classifier
from .depth import DepthEstimator
from .detector import Detector
from .face import FaceDetector
from .obb import ObbDetector
from .pose import COCO_SKELETON, PoseDetector
from ..results import Classifications, DepthMap, SemanticMask
from .segmenter import Segmenter
from .semantic import SemanticSegmenter
from ..spec import TASKS
from .base import Task
from .options import split_keywords

__all__ = ["open_model", "annotate", "warmup_tasks", "TASK_CLASSES", "all_option_names"]

# spec task -> the class serving it (each class's TASK); a new task adds its class here
TASK_CLASSES: dict[str, type[Task]] = {cls.TASK: cls for cls in (
    Detector, PoseDetector, Segmenter, ObbDetector, Classifier, FaceDetector, SemanticSegmenter, DepthEstimator)}


def open_model(path: str, task: str | None = None, *, strict: bool = True, **kwargs: Any) -> Task:
    """Open an ONNX model as the task object its spec names (or ``task``): Detector, PoseDetector,
    Segmenter, ObbDetector, Classifier, FaceDetector, SemanticSegmenter or DepthEstimator (``Task.open``). Keywords as
    ``from_path``: any task's option names, session names and ModelSpec fields; an unknown name raises
    ``TypeError`` naming the closest one. Options of another task raise ``EdgerunValueError``, or are
    dropped when ``strict=False`` (the CLI passes its thresholds to every task)."""
    if task is not None and task not in TASK_CLASSES:
        supported = ", ".join(TASK_CLASSES)
        extra = f" ({task!r} is a known task not implemented yet)" if task in TASKS else ""
        raise EdgerunValueError(f"task: expected one of {supported}, got {task!r}{extra}")
    options, model = split_keywords("open_model", kwargs, all_option_names())
    if task is not None:
        # the head stays the model's when the task reads it, else the task's own (spec.TASK_HEADS)
        model = model.replace(**{"task": task, **model.overrides})
    return Task.open(path, options, model, strict=strict)


def all_option_names() -> tuple[str, ...]:
    """Every task's option names (what ``open_model`` accepts besides ModelOptions' names)."""
    return tuple(dict.fromkeys(n for cls in TASK_CLASSES.values() for n in cls.Options.names()))


def annotate(image: np.ndarray, result, names: tuple[str, ...] = ()) -> np.ndarray:
    """Draw any task's result on a BGR image in place: boxes (rotated ones as polygons), masks, keypoints,
    landmarks, top-k."""
    from edgerun.kernels import annotate as ann
    from edgerun.kernels.draw import draw_boxes

    if isinstance(result, DepthMap):
        return ann.draw_depth(image, result.depth)
    if isinstance(result, SemanticMask):  # class 0 stays undrawn unless the model names it otherwise
        return ann.draw_label_map(image, result.label_map, background=None if len(names) and names[0] != "background" else 0)
    if isinstance(result, Classifications):
        lines = [f"{names[c] if c < len(names) else c} {p:.3f}" for c, p in
                 zip(result.class_id.tolist(), result.confidence.tolist())]
        return ann.draw_text_lines(image, lines)
    if result.mask is not None:
        ann.draw_masks(image, result.mask, result.class_id)
    if "xyxyxyxy" in result.data:  # oriented boxes: their outline, not the axis-aligned bounds
        from edgerun.kernels.draw import draw_obb
        draw_obb(image, result.data["xyxyxyxy"], result.class_id, result.confidence, names=names)
    else:
        draw_boxes(image, result.xyxy, result.class_id, result.confidence, names=names)
    if "keypoints" in result.data:
        k = result.data["keypoints"]
        skeleton = COCO_SKELETON if k.shape[1] == 17 else ()
        ann.draw_keypoints(image, k, result.data.get("keypoint_confidence"), skeleton)
    if "landmarks" in result.data:
        ann.draw_landmarks(image, result.data["landmarks"])
    return image


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
    from edgerun.kernels.resample import bilinear_argmax, pil_resize, resize_bilinear

    pil_resize(np.zeros((8, 8, 3), np.uint8), (4, 4))  # Ultralytics classifiers
    maps = np.zeros((2, 4, 4), np.float32)
    for align in (False, True):  # semantic logits (False), depth (True)
        resize_bilinear(maps, (6, 6), align_corners=align)
    bilinear_argmax(maps, (6, 6))
    from .warmup import warmup_obb  # the oriented-box kernels (kernels/obb.py)

    return 14 + warmup_obb()
