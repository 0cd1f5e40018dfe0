"""Detection accuracy: average precision at one IoU threshold (numpy only).

VOC2010+/COCO-style: per class, detections of all images sorted by score (stable), each matched
greedily to the unmatched ground-truth box of its class with the highest IoU >= threshold; AP is
the area under the precision envelope (all-point interpolation). mAP averages over the classes
that have ground truth.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["box_iou", "average_precision", "mean_average_precision"]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU (N, M) float64 of xyxy boxes ``a`` (N, 4) and ``b`` (M, 4)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope of a PR curve (points in score order)."""
    r = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    p = np.concatenate([[1.0], np.asarray(precision, np.float64), [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # envelope: max precision at any recall >= r
    step = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[step + 1] - r[step]) * p[step + 1]))


def _match_class(preds: list, truths: list, iou_threshold: float) -> tuple[np.ndarray, np.ndarray, int]:
    """TP flags and scores of one class's detections over all images, and its GT count."""
    scores, tp, n_gt = [], [], 0
    for (xyxy, conf), gt in zip(preds, truths):
        n_gt += len(gt)
        order = np.argsort(-conf, kind="stable")
        iou = box_iou(xyxy[order], gt)
        taken = np.zeros(len(gt), bool)
        for i in range(len(order)):
            cand = np.where(taken, -1.0, iou[i]) if len(gt) else np.zeros(0)
            j = int(np.argmax(cand)) if len(cand) else -1
            hit = j >= 0 and cand[j] >= iou_threshold
            if hit:
                taken[j] = True
            tp.append(hit)
        scores.append(conf[order])
    return np.asarray(tp, bool), (np.concatenate(scores) if scores else np.zeros(0)), n_gt


def mean_average_precision(predictions: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                           ground_truths: Sequence[tuple[np.ndarray, np.ndarray]], num_classes: int,
                           iou_threshold: float = 0.5) -> dict:
    """mAP over images.

    ``predictions``: per image ``(xyxy (N, 4), confidence (N,), class_id (N,))``;
    ``ground_truths``: per image ``(xyxy (M, 4), class_id (M,))``, same order.
    Returns ``{"map": float, "ap": {class_id: AP}, "num_gt": {class_id: count}}``.
    """
    if len(predictions) != len(ground_truths):
        raise ValueError(f"predictions: expected one entry per ground-truth image ({len(ground_truths)}), "
                         f"got {len(predictions)}")
    ap, counts = {}, {}
    for c in range(num_classes):
        preds = [(np.asarray(b).reshape(-1, 4)[np.asarray(k) == c], np.asarray(s)[np.asarray(k) == c])
                 for b, s, k in predictions]
        truths = [np.asarray(b).reshape(-1, 4)[np.asarray(k) == c] for b, k in ground_truths]
        tp, scores, n_gt = _match_class(preds, truths, iou_threshold)
        counts[c] = n_gt
        if n_gt == 0:
            continue
        order = np.argsort(-scores, kind="stable")
        hits = np.cumsum(tp[order])
        recall = hits / n_gt
        precision = hits / np.arange(1, len(hits) + 1)
        ap[c] = average_precision(recall, precision)
    return {"map": float(np.mean(list(ap.values()))) if ap else 0.0, "ap": ap, "num_gt": counts}
