"""Ahead-of-time compilation of every kernel signature the runtime uses (``edgerun warmup``).

Run once at deployment (or image build) time: later processes load the compiled kernels from
edgerun's cache instead of compiling them on the first frame.
"""
from __future__ import annotations

import numpy as np

from edgerun.kernels.preprocess import PIXEL_FORMATS


def _frame(fmt: str, h: int = 8, w: int = 8) -> np.ndarray:
    if fmt in ("YUV420", "YVU420"):  # picamera2's buffer with row padding, sliced to the width
        return np.zeros((h * 3 // 2, w + 64), np.uint8)[:, :w]
    if fmt in ("XRGB8888", "XBGR8888"):
        return np.zeros((h, w, 4), np.uint8)
    if fmt in ("nv12", "nv21", "i420"):
        return np.zeros((h * 3 // 2, w), np.uint8)
    if fmt == "yuyv":
        return np.zeros((h, w, 2), np.uint8)
    if fmt == "gray":
        return np.zeros((h, w), np.uint8)
    return np.zeros((h, w, 3), np.uint8)


def warmup() -> int:
    """Compile (or load from cache) every kernel signature; returns how many calls were made."""
    from edgerun.kernels.boxes import scale_boxes
    from edgerun.kernels.decode import decode
    from edgerun.kernels.draw import draw_boxes
    from edgerun.kernels.nms import nms
    from edgerun.kernels.preprocess import letterbox

    n = 0
    for fmt in PIXEL_FORMATS:
        for dtype in (np.float32, np.float16):
            for layout in ("chw", "hwc"):
                for mode in ("letterbox", "stretch", "center_crop"):
                    for order in ("rgb", "bgr"):  # BGR models (YOLOX) pass other channel tables
                        _, geo = letterbox(_frame(fmt), (16, 16), pixel_format=fmt, mode=mode,
                                           layout=layout, dtype=dtype, channel_order=order)
                        n += 1
    # strided (non-contiguous) BGR views compile their own signature, and so do unpadded
    # (contiguous) picamera2 YUV420 buffers
    letterbox(np.zeros((8, 16, 3), np.uint8)[:, ::2], (16, 16))
    letterbox(np.zeros((12, 8), np.uint8), (16, 16), pixel_format="YUV420")
    n += 2
    for fmt in ("nv12", "i420", "yuyv", "YUV420"):  # YUV decimated 3x (e.g. 1080p -> 640): its own kernel
        for dtype in (np.float32, np.float16):
            letterbox(_frame(fmt, 48, 48), (16, 16), pixel_format=fmt, dtype=dtype)
            n += 1
    heads = {"yolov8": (1, 6, 21), "yolov5": (1, 21, 7), "yolox": (1, 21, 7), "end2end": (1, 5, 6),
             "dfl": (1, 66, 21)}
    for head, shape in heads.items():
        for dtype in (np.float32, np.float16):
            decode(np.zeros(shape, dtype), head, num_classes=2, input_hw=(32, 32),
                   strides=(8, 16, 32), reg_max=16)
            n += 1
    boxes = np.array([[0, 0, 4, 4], [1, 1, 5, 5]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    for agnostic in (False, True):
        nms(boxes, scores, np.zeros(2, np.int32), class_agnostic=agnostic)
        n += 1
    scale_boxes(boxes, geo)
    from edgerun.kernels.assign import box_iou, linear_assignment  # the stream tracker's kernels

    linear_assignment(1.0 - box_iou(boxes, boxes), 0.8)
    n += 2
    draw_boxes(np.zeros((16, 16, 3), np.uint8), boxes, np.zeros(2, np.int64), scores)
    from .dispatch import warmup_tasks  # classify / pose / segment / face / semantic kernels

    return n + 2 + warmup_tasks()


def warmup_obb() -> int:
    """Compile (or load from cache) the oriented-box kernels (kernels/obb.py) for float32 and float16 heads;
    returns how many calls were made. Called by ``dispatch.warmup_tasks``."""
    from edgerun.kernels.obb import (corners_to_xyxy, decode_obb, decode_obb_end2end, obb_nms, probiou,
                                     regularize_rboxes, scale_rboxes, xywhr_to_corners)
    from edgerun.kernels.preprocess import plan

    n = 0
    for dtype in (np.float32, np.float16):
        raw = np.zeros((1, 4 + 2 + 1, 8), dtype)
        raw[0, 4] = 0.9  # candidates, so the whole kernel runs
        decode_obb(raw, num_classes=2)
        rows = np.zeros((1, 4, 7), dtype)
        rows[0, 0, 4] = 0.9
        decode_obb_end2end(rows)
        n += 2
    xywhr = np.array([[4, 4, 4, 2, 0.3], [5, 4, 4, 2, 0.2]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    for cls in (np.zeros(2, np.int32), np.zeros(2, np.int64)):
        for agnostic in (False, True):
            obb_nms(xywhr, scores, cls, class_agnostic=agnostic)
            n += 1
    probiou(xywhr, xywhr)
    regularize_rboxes(xywhr)
    scale_rboxes(xywhr, plan(16, 16, 32))
    corners_to_xyxy(xywhr_to_corners(xywhr))
    return n + 5
