"""Data for the demo detector: letterboxed synthetic scenes, and a numpy reference detector.

``letterbox`` reproduces Ultralytics' (and so edgerun's) preprocessing with OpenCV: keep aspect,
resize with INTER_LINEAR, pad 114 centred, RGB, /255, CHW float32. Training feeds exactly what the
runtime will feed. ``reference_detect`` (ORT + numpy decode/NMS) lets the training script score
an exported file without the runtime's kernels. numpy + OpenCV only.
"""
from __future__ import annotations

from typing import Callable, Iterable

import cv2
import numpy as np

from edgerun.runtime.demo import CLASS_NAMES, make_scene

from .metrics import box_iou, mean_average_precision

__all__ = ["letterbox", "scene_batch", "reference_detect", "evaluate_map50", "EVAL_SEED_BASE"]

EVAL_SEED_BASE = 1_000_000  # training draws seeds below this; evaluation at or above it


def letterbox(image: np.ndarray, size: tuple[int, int] = (320, 320)
              ) -> tuple[np.ndarray, float, tuple[float, float]]:
    """BGR uint8 -> (CHW RGB float32 /255, gain, (pad_x, pad_y)); Ultralytics' rounding."""
    h, w = image.shape[:2]
    r = min(size[0] / h, size[1] / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    dw, dh = (size[1] - nw) / 2, (size[0] - nh) / 2
    if (nw, nh) != (w, h):
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
    bottom, right = size[0] - nh - top, size[1] - nw - left
    image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    tensor = image[..., ::-1].transpose(2, 0, 1).astype(np.float32) * np.float32(1 / 255)
    gain = min(size[0] / h, size[1] / w)
    pad = (float(round((size[1] - w * gain) / 2 - 0.1)), float(round((size[0] - h * gain) / 2 - 0.1)))
    return np.ascontiguousarray(tensor), gain, pad


def random_scene_size(rng: np.random.Generator) -> tuple[int, int]:
    """A source size: long side 320..800, aspect 1:1 .. 2:1 either way."""
    long_side = int(rng.integers(320, 801))
    short_side = int(long_side / rng.uniform(1.0, 2.0))
    return (short_side, long_side) if rng.random() < 0.7 else (long_side, short_side)


def scene_batch(seeds: Iterable[int], size: tuple[int, int] = (320, 320)
                ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Letterboxed scenes (B, 3, H, W) float32 with boxes in input pixels and class ids."""
    tensors, boxes, classes = [], [], []
    for seed in seeds:
        rng = np.random.default_rng([seed, 7])
        image, xyxy, cls = make_scene(seed, random_scene_size(rng), max_objects=8)
        tensor, gain, (px, py) = letterbox(image, size)
        tensors.append(tensor)
        boxes.append((xyxy * gain + np.array([px, py, px, py], np.float32)).astype(np.float32))
        classes.append(cls)
    return np.stack(tensors), boxes, classes


def _nms(xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS (suppress IoU > threshold), kept indices in score order."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while len(order):
        i = order[0]
        keep.append(i)
        order = order[1:][box_iou(xyxy[i:i + 1], xyxy[order[1:]])[0] <= iou_threshold]
    return np.asarray(keep, np.int64)


def reference_detect(run: Callable[[np.ndarray], np.ndarray], image: np.ndarray,
                     size: tuple[int, int] = (320, 320), score_threshold: float = 0.25,
                     iou_threshold: float = 0.7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detect with a yolov8-format model: ``run`` maps (1, 3, H, W) -> (1, 4+C, N).

    Class-aware NMS (offset trick), boxes mapped back to source pixels and clipped.
    """
    tensor, gain, (px, py) = letterbox(image, size)
    out = np.asarray(run(tensor[None]))[0].T  # (N, 4+C)
    scores_all = out[:, 4:]
    cls = np.argmax(scores_all, axis=1)
    conf = scores_all[np.arange(len(cls)), cls]
    sel = conf > score_threshold
    cxcywh, conf, cls = out[sel, :4], conf[sel], cls[sel]
    xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)
    keep = _nms(xyxy + cls[:, None] * 4096.0, conf, iou_threshold)
    xyxy = (xyxy[keep] - np.array([px, py, px, py])) / gain
    h, w = image.shape[:2]
    np.clip(xyxy, 0, [w, h, w, h], out=xyxy)
    return xyxy.astype(np.float32), conf[keep].astype(np.float32), cls[keep].astype(np.int64)


def evaluate_map50(detect: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]],
                   n_scenes: int = 50, seed_base: int = EVAL_SEED_BASE) -> dict:
    """mAP50 of ``detect(bgr) -> (xyxy, confidence, class_id)`` on fresh scenes of varied sizes."""
    preds, truths = [], []
    for seed in range(seed_base, seed_base + n_scenes):
        rng = np.random.default_rng([seed, 7])
        image, xyxy, cls = make_scene(seed, random_scene_size(rng), max_objects=8)
        preds.append(detect(image))
        truths.append((xyxy, cls))
    return mean_average_precision(preds, truths, len(CLASS_NAMES), iou_threshold=0.5)
