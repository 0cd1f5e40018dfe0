"""Greedy IoU non-maximum suppression with torchvision semantics, class-aware or class-agnostic.

Facts this module (and decode.py) relies on, read from the sources named (paraphrased, not copied):

ultralytics/utils/nms.py, ``non_max_suppression`` and ``TorchNMS`` (Ultralytics 8.3.x):
  - candidates: ``amax`` over the class rows ``> conf_thres`` (strict); class = ``cls.max(1)`` (first max),
    kept again iff ``conf > conf_thres`` (strict). torch ``amax``/``max`` propagate NaN, so a NaN class score
    makes the whole anchor a non-candidate (NaN > thr is False).
  - boxes: ``xywh2xyxy`` (ultralytics/utils/ops.py): x1y1 = xy - wh/2, x2y2 = xy + wh/2, in float32.
  - more than ``max_nms`` (30000) candidates: ``argsort(descending=True)[:max_nms]`` (torch argsort, not
    guaranteed stable), so the cap keeps the highest scores.
  - class-aware NMS = one ``torchvision.ops.nms`` (or ``TorchNMS.nms``, "matches torchvision exactly") on
    boxes offset by ``class * max_wh`` (max_wh = 7680); agnostic = offset 0.
  - ``max_det`` is applied after NMS: ``i = i[:max_det]`` (kept indices are in descending score order).
  - end2end output (last dim 6): keep ``pred[:, 4] > conf_thres``, first ``max_det`` in model order, no NMS.
  - a wall-clock limit (``time_limit``) may stop NMS early; edgerun has none: the same input always
    gives the same boxes, however loaded the device.
torchvision/csrc/ops/cpu/nms_kernel.cpp: areas ``(x2-x1)*(y2-y1)`` (no +1); intersection w, h clamped at
  0; IoU = inter / (area_i + area_j - inter) in the box dtype (float32); suppress j iff IoU > threshold
  (strict); boxes visited in descending score order; suppressed boxes suppress nothing; 0/0 = NaN never
  suppresses.
ultralytics/yolov5 utils/general.py ``non_max_suppression``: ``obj > conf_thres`` first, then
  conf = obj * cls, best class (first max), kept iff conf > conf_thres; same torchvision NMS and max_det.
OpenCV modules/dnn/src/nms.cpp (+ nms.inl.hpp), ``NMSBoxes``/``NMSBoxesBatched``: boxes are (x, y, w, h);
  candidates ``score > score_threshold`` (strict); ``std::stable_sort`` by score descending (ties: lower
  index first); ``top_k`` truncates the *candidates* before NMS, not the kept list; IoU = 1 - jaccardDistance
  in double (area w*h, no +1; two empty boxes give IoU 1, i.e. suppress); keep iff IoU <= nms_threshold;
  batched = offset x and y by class * (max coordinate + 1).

Our choices where these differ: ties are stable (lower index first); class-aware NMS compares class ids
instead of adding a 7680 * class offset (the offset costs float32 precision: at class 79 coordinates are
~6e5, resolution 1/16 px); degenerate boxes follow torchvision (0/0 never suppresses).
"""
from __future__ import annotations

import numpy as np

from . import checks
from ._jit import inner, jit
from .errors import EdgerunValueError

__all__ = ["nms", "sort_desc"]

_U32 = np.uint32
_U64 = np.uint64


@inner
def sort_desc(s):
    """Positions of ``s`` (float32, no NaN) by descending value; equal values keep ascending position
    (an inner kernel, shared with ``decode``'s candidate ordering)."""
    n = s.shape[0]
    tmp = np.empty(n, np.float32)
    for i in range(n):
        tmp[i] = s[i] + np.float32(0.0)  # -0.0 -> +0.0 so equal values have equal bits
    bits = tmp.view(np.uint32)
    keys = np.empty(n, np.uint64)
    for i in range(n):
        u = bits[i]
        asc = ~u if (u >> _U32(31)) != _U32(0) else (u | _U32(0x80000000))  # order-preserving map
        keys[i] = (_U64(~asc) << _U64(32)) | _U64(i)
    keys.sort()
    order = np.empty(n, np.int64)
    for i in range(n):
        order[i] = np.int64(keys[i] & _U64(0xFFFFFFFF))
    return order


@inner
def _is_desc(s) -> bool:
    for i in range(s.shape[0] - 1):
        if s[i] < s[i + 1]:
            return False
    return True


@inner
def order_finite(scores):
    """Indices of the non-NaN scores, in descending score order with stable ties (an inner kernel, shared with
    the OBB NMS)."""
    n = scores.shape[0]
    valid = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        if scores[i] == scores[i]:
            valid[m] = i
            m += 1
    s = np.empty(m, np.float32)
    for k in range(m):
        s[k] = scores[valid[k]]
    if _is_desc(s):
        return valid[:m]
    order = sort_desc(s)
    out = np.empty(m, np.int64)
    for k in range(m):
        out[k] = valid[order[k]]
    return out


@jit
def _nms_kernel(xyxy, scores, cls, n_cls, iou_threshold, max_det):
    """Greedy NMS. ``cls`` in [0, n_cls) (all zeros for agnostic). Returns kept indices (int64)."""
    order = order_finite(scores)
    thr = np.float32(iou_threshold)  # compare in float32, as torchvision does (IoU 4/80 vs 0.05: equal)
    cap = min(max_det, order.shape[0])
    keep = np.empty(cap, np.int64)
    kb = np.empty((cap, 5), np.float32)  # kept x1, y1, x2, y2, area
    prev = np.empty(cap, np.int64)  # previous kept slot of the same class
    head = np.full(n_cls, -1, np.int64)  # last kept slot per class
    nk = 0
    for k in range(order.shape[0]):
        if nk >= cap:
            break
        i = order[k]
        x1, y1, x2, y2 = xyxy[i, 0], xyxy[i, 1], xyxy[i, 2], xyxy[i, 3]
        area = (x2 - x1) * (y2 - y1)
        c = cls[i]
        j = head[c]
        ok = True
        while j >= 0:
            w = min(x2, kb[j, 2]) - max(x1, kb[j, 0])
            h = min(y2, kb[j, 3]) - max(y1, kb[j, 1])
            if w > 0 and h > 0:
                inter = w * h
                union = kb[j, 4] + area - inter
                if union > 0 and inter / union > thr:  # 0/0 (underflow) never suppresses
                    ok = False
                    break
            j = prev[j]
        if ok:
            kb[nk, 0], kb[nk, 1], kb[nk, 2], kb[nk, 3], kb[nk, 4] = x1, y1, x2, y2, area
            prev[nk] = head[c]
            head[c] = nk
            keep[nk] = i
            nk += 1
    return keep[:nk].copy()


def _dense_classes(name: str, class_id, n: int) -> tuple[np.ndarray, int]:
    """Class ids as a small dense int range [0, n_cls) the kernel can index with."""
    class_id = checks.array(name, class_id, (np.int32, np.int64), 1)
    if class_id.shape[0] != n:
        raise EdgerunValueError(f"{name}: expected shape ({n},) to match xyxy, got {class_id.shape}")
    if n == 0:
        return np.zeros(0, np.int64), 1
    lo, hi = int(class_id.min()), int(class_id.max())
    if lo >= 0 and hi < max(65536, 4 * n):
        return class_id, hi + 1
    uniq, inverse = np.unique(class_id, return_inverse=True)
    return inverse.astype(np.int64).reshape(-1), len(uniq)


def nms(xyxy: np.ndarray, scores: np.ndarray, class_id: np.ndarray | None = None, *,
        iou_threshold: float = 0.7, max_detections: int = 300, class_agnostic: bool = False) -> np.ndarray:
    """Greedy IoU NMS; returns int64 indices of the kept boxes, by descending score (ties: lower index).

    ``xyxy`` (N, 4) float32, ``scores`` (N,) float32 (NaN scores are never kept), ``class_id`` (N,) int32
    or int64. Box j is suppressed when IoU(kept i, j) > ``iou_threshold`` (torchvision). Class-aware unless
    ``class_agnostic`` or ``class_id`` is None. Stops once ``max_detections`` boxes are kept.
    """
    xyxy = checks.array("xyxy", xyxy, np.float32, 2)
    n = xyxy.shape[0]
    if xyxy.shape[1] != 4:
        raise EdgerunValueError(f"xyxy: expected shape (N, 4), got {xyxy.shape}")
    scores = checks.array("scores", scores, np.float32, 1)
    if scores.shape[0] != n:
        raise EdgerunValueError(f"scores: expected shape ({n},) to match xyxy, got {scores.shape}")
    iou = checks.finite_float("iou_threshold", iou_threshold, 0.0, 1.0)
    max_det = checks.positive_int("max_detections", max_detections)
    if class_id is None or class_agnostic:
        if class_id is not None:
            _dense_classes("class_id", class_id, n)  # still validate it
        cls, n_cls = np.zeros(n, np.int64), 1
    else:
        cls, n_cls = _dense_classes("class_id", class_id, n)
    if n == 0:
        return np.zeros(0, np.int64)
    return _nms_kernel(xyxy, scores, cls, n_cls, iou, max_det)
