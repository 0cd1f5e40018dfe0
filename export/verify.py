"""Verification gate: the source and the exported ONNX through the same edgerun Detector.

Reported: raw-output error on identical input tensors (max abs, and max abs relative to the
reference output's range), and box agreement F1: detections of the exported model matched one-to-one
(greedy, highest IoU first, same class, IoU >= ``iou_min``) to the source model's. Boxes whose score
is within ``score_margin`` of the score threshold and that have no partner are not counted: a
0.251 vs 0.249 flip across the threshold is not a disagreement about the image. Nor are unpartnered
boxes NMS kept by a hair (``nms_borderline``: IoU within ``nms_margin`` of the NMS IoU with a stronger
box of their class that is matched): the other model may suppress that duplicate by a hair.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .metrics import box_iou

__all__ = ["Agreement", "add_agreement", "compare_detectors", "image_files", "default_scenes", "format_table",
           "nms_borderline", "NMS_MARGIN"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# fp16 moved the pairwise IoU that NMS thresholds on by at most 0.0104 (p99 0.0042; YOLOv8s fall checkpoint
# and YOLOv8n-seg at imgsz 320, 30 photos): a duplicate within 0.02 of the NMS IoU may flip without drift.
NMS_MARGIN = 0.02


@dataclass
class Agreement:
    images: int = 0
    ref_boxes: int = 0
    new_boxes: int = 0
    matched: int = 0
    borderline: int = 0  # unmatched boxes near the score threshold or the NMS IoU, not counted
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0  # max |new - ref| / max |ref| per output, worst over images
    per_image: list = field(default_factory=list)

    @property
    def f1(self) -> float:
        total = self.ref_boxes + self.new_boxes
        return 1.0 if total == 0 else 2.0 * self.matched / total

    def as_dict(self) -> dict[str, Any]:
        return {"images": self.images, "ref_boxes": self.ref_boxes, "new_boxes": self.new_boxes,
                "matched": self.matched, "borderline_ignored": self.borderline, "f1": self.f1,
                "max_abs_error": self.max_abs_error, "max_rel_error": self.max_rel_error}


def image_files(directory: str, what: str) -> list[str]:
    """Sorted image files in ``directory``; ValueError naming ``what`` when there are none."""
    if not os.path.isdir(directory):
        raise ValueError(f"{what}: {directory!r} is not a readable directory")
    files = sorted(f for f in glob.glob(os.path.join(directory, "*"))
                   if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(f))
    if not files:
        raise ValueError(f"{what}: no images ({', '.join(IMAGE_EXTENSIONS)}) in {directory!r}")
    return files


def default_scenes() -> list[tuple[str, np.ndarray]]:
    """Generated demo scenes (square and non-square) when no verification images are given."""
    from edgerun.runtime.demo import make_scene

    sizes = [(480, 640), (640, 480), (360, 640), (640, 640), (300, 500), (720, 540)]
    return [(f"scene{seed}_{h}x{w}", make_scene(9000 + seed, (h, w))[0]) for seed, (h, w) in enumerate(sizes)]


def compare_detectors(ref, new, images: Sequence[tuple[str, np.ndarray]], *, iou_min: float = 0.9,
                      score_margin: float = 0.05, nms_margin: float = NMS_MARGIN) -> Agreement:
    """Run both detectors (edgerun ``Detector``s) on every image; see the module docstring."""
    agg = Agreement()
    for name, image in images:
        tensor, geo = ref.preprocess(image)
        tensor = tensor.copy()
        r_out = [o.copy() for o in ref.infer(tensor)]
        n_out = [o.copy() for o in new.infer(tensor)]
        _raw_errors(agg, r_out, n_out)
        add_agreement(agg, name, image.shape[:2], ref.postprocess(r_out, geo), new.postprocess(n_out, geo),
                      iou_min=iou_min, solid=ref.score_threshold + score_margin,
                      nms_near=ref.iou_threshold - nms_margin)
    return agg


def add_agreement(agg: Agreement, name: str, shape: tuple[int, int], a, b, *, iou_min: float = 0.9,
                  solid: float = 0.30, nms_near: float = 0.7 - NMS_MARGIN) -> Agreement:
    """Count one image's boxes ``b`` against the reference ``a`` (both with xyxy, confidence,
    class_id) into ``agg``, the same rule as ``compare_detectors`` (``solid``: score below which an
    unmatched box is borderline; ``nms_near``: NMS IoU minus the margin). Returns ``agg``."""
    m, border, n_ref, n_new = _agree(a, b, iou_min, solid, nms_near)
    agg.images += 1
    agg.matched += m
    agg.borderline += border
    agg.ref_boxes += n_ref
    agg.new_boxes += n_new
    agg.per_image.append((name, tuple(shape), n_ref, n_new, m))
    return agg


def _raw_errors(agg: Agreement, ref: list[np.ndarray], new: list[np.ndarray]) -> None:
    for r, n in zip(ref, new):
        if r.shape != n.shape:
            agg.max_abs_error = agg.max_rel_error = float("inf")
            continue
        diff = float(np.abs(r.astype(np.float64) - n.astype(np.float64)).max(initial=0.0))
        scale = float(np.abs(r.astype(np.float64)).max(initial=0.0)) or 1.0
        agg.max_abs_error = max(agg.max_abs_error, diff)
        agg.max_rel_error = max(agg.max_rel_error, diff / scale)


def _agree(a, b, iou_min: float, solid: float, nms_near: float) -> tuple[int, int, int, int]:
    """(matched, borderline unmatched, counted ref boxes, counted new boxes) for one image."""
    iou = box_iou(a.xyxy, b.xyxy)
    iou = np.where(a.class_id[:, None] == b.class_id[None, :], iou, 0.0)
    used_a, used_b = set(), set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] < iou_min:
            break
        if i not in used_a and j not in used_b:
            used_a.add(int(i))
            used_b.add(int(j))
    near_a = nms_borderline(a.xyxy, a.confidence, a.class_id, used_a, nms_near)
    near_b = nms_borderline(b.xyxy, b.confidence, b.class_id, used_b, nms_near)
    weak_a = [i for i in range(len(a.confidence)) if i not in used_a and (a.confidence[i] < solid or near_a[i])]
    weak_b = [j for j in range(len(b.confidence)) if j not in used_b and (b.confidence[j] < solid or near_b[j])]
    m = len(used_a)
    return m, len(weak_a) + len(weak_b), len(a.confidence) - len(weak_a), len(b.confidence) - len(weak_b)


def nms_borderline(xyxy: np.ndarray, confidence: np.ndarray, class_id: np.ndarray, paired: set[int],
                   iou_near: float) -> np.ndarray:
    """(N,) bool: box i is not in ``paired`` and overlaps a stronger box of its class that is, with IoU
    >= ``iou_near``. NMS kept it by a hair, so another model may suppress it by a hair while agreeing on
    the object (the stronger box is matched)."""
    n = len(confidence)
    if n == 0:
        return np.zeros(0, np.bool_)
    conf, cls = np.asarray(confidence), np.asarray(class_id)
    stronger = (cls[:, None] == cls[None, :]) & (conf[:, None] < conf[None, :])
    stronger &= np.isin(np.arange(n), sorted(paired))[None, :]
    near = ((box_iou(xyxy, xyxy) >= iou_near) & stronger).any(axis=1)
    return near & ~np.isin(np.arange(n), sorted(paired))


def format_table(rows: Sequence[tuple[str, str]]) -> str:
    """Two aligned columns."""
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)
