"""ObbDetector: oriented boxes (YOLOv8/11-obb, YOLO26-obb), Ultralytics 8.4 semantics.

Two heads, as Ultralytics' exporter writes them:

- raw one-to-many head "obb" (1, 4 + C + 1, N): rows cx, cy, w, h (tensor px), C class scores (already
  sigmoided), then the angle in radians (YOLOv8/11 squash it to [-pi/4, 3pi/4); YOLO26 emits it raw;
  either way it is used as is). Decoded like ``non_max_suppression(rotated=True)``: best class with a
  score > threshold, at most ``max_candidates`` by score, then class-offset probiou Fast-NMS (a box is
  dropped when any higher-scored box of its class overlaps it by more than ``iou_threshold``), at most
  ``max_detections`` kept;
- post-processed head "end2end" (1, K, 7): YOLO26's NMS-free ``nms=False`` export or any ``nms=True``
  export, rows cx, cy, w, h, score, class, angle; confidence filter only (zero padding rows never pass).

Boxes go back through the letterbox as Ultralytics' ``scale_boxes(xywh=True)`` does (centre minus
padding, centre and size over the per-axis gain, no clipping). Like Ultralytics 8.4's predictor, the
rotated box is returned as the model emits it (not regularized: ``Results.obb.xywhr`` is not either).

Results (supervision's convention): ``Detections.xyxy`` the axis-aligned bounds of the corners,
``data["xyxyxyxy"]`` (N, 4, 2) float32 corners (Ultralytics' ``xywhr2xyxyxyxy`` order), ``data["xywhr"]``
(N, 5) float32 centre, size, angle.
"""
from __future__ import annotations

import numpy as np

from edgerun.kernels.preprocess import Geometry

from ..results import Detections
from ..session import ModelError, Session
from ..spec import ModelSpec
from .base import Task
from .options import ObbOptions

__all__ = ["ObbDetector", "OBB_HEADS"]

OBB_HEADS = ("obb", "end2end")


class ObbDetector(Task):
    """Oriented-box detector. ``ObbDetector.from_path(path, score_threshold=0.25, iou_threshold=0.7,
    max_detections=300, class_agnostic=False, max_candidates=30000, **model_options)`` (``ObbOptions`` /
    ``ModelOptions``); ``run(image)`` -> ``Detections`` with ``data["xyxyxyxy"]`` and ``data["xywhr"]``.
    Thread-safe."""

    Options = ObbOptions
    TASK = "obb"

    def __init__(self, session: Session, spec: ModelSpec, options: ObbOptions | None = None):
        shape = session.outputs[0].shape if session.outputs else ()
        if spec.head not in OBB_HEADS or len(shape) != 3:
            raise ModelError(f"{session.path}: an OBB model needs head 'obb' (1, 4+C+1, N) or 'end2end' (1, K, 7); "
                             f"got head={spec.head!r}, outputs {[o.shape for o in session.outputs]}")
        rows, cols = shape[1], shape[2]
        if spec.head == "obb" and isinstance(rows, int) and rows != 4 + spec.num_classes + 1:
            raise ModelError(f"{session.path}: output rows {rows} != 4 + {spec.num_classes} classes + 1 angle; "
                             "check num_classes")
        if spec.head == "end2end" and isinstance(cols, int) and cols != 7:
            raise ModelError(f"{session.path}: end2end OBB output columns {cols} != 7 (cx, cy, w, h, score, "
                             "class, angle)")
        super().__init__(session, spec, options)
        o = self.options
        self.score_threshold, self.iou_threshold = o.score_threshold, o.iou_threshold
        self.max_detections, self.max_candidates = o.max_detections, o.max_candidates
        self.class_agnostic = o.class_agnostic

    def detect(self, image: np.ndarray, pixel_format: str = "bgr") -> Detections:
        """Oriented boxes of one frame (``run``)."""
        return self.run(image, pixel_format)

    def postprocess(self, outputs: list[np.ndarray], geometry: Geometry, batch_index: int = 0) -> Detections:
        """Raw outputs -> Detections with oriented boxes in source pixels."""
        s = self.spec
        raw = np.asarray(outputs[0][batch_index], np.float32)
        if s.head == "end2end":  # rows cx, cy, w, h, score, class, angle; zero padding fails the threshold
            keep = np.flatnonzero(raw[:, 4] > self.score_threshold)[:self.max_detections]
            xywhr = raw[keep][:, [0, 1, 2, 3, 6]]
            scores, classes = raw[keep, 4], raw[keep, 5].astype(np.int64)
        else:
            keep, xywhr, scores, classes = _decode(raw, s.num_classes, self.score_threshold, self.max_candidates)
            order = _fast_nms(xywhr, scores, classes, self.iou_threshold, self.class_agnostic)[:self.max_detections]
            keep, xywhr, scores, classes = keep[order], xywhr[order], scores[order], classes[order]
        xywhr = _scale(xywhr, geometry)
        corners = _corners(xywhr)
        bounds = np.concatenate([corners.min(1), corners.max(1)], 1).astype(np.float32)
        return Detections(bounds, scores.astype(np.float32), classes, image_shape=(geometry.src_h, geometry.src_w),
                          data={"xyxyxyxy": corners, "xywhr": xywhr, "anchor_index": keep.astype(np.int64)})

    def __repr__(self) -> str:
        s = self.spec
        return (f"ObbDetector(head={s.head}, input={s.input_size}, classes={s.num_classes}, "
                f"score>{self.score_threshold}, iou>{self.iou_threshold})")


# -- Ultralytics' rotated post-processing (float32, as its torch code runs on CPU) ----------------------
MAX_WH = np.float32(7680)  # non_max_suppression's per-class offset


def _decode(raw: np.ndarray, nc: int, thr: float, cap: int):
    """(4+C+1, N) -> anchors with best class score > thr (first max), at most ``cap`` by score:
    (anchor index, xywhr (K, 5), score, class)."""
    cls = raw[4:4 + nc]
    best = cls.max(0)
    idx = np.flatnonzero(best > np.float32(thr))
    if len(idx) > cap:
        idx = idx[np.argsort(-best[idx], kind="stable")[:cap]]
    xywhr = np.ascontiguousarray(raw[[0, 1, 2, 3, 4 + nc]][:, idx].T)
    return idx, xywhr, best[idx], cls[:, idx].argmax(0).astype(np.int64)


def _covariance(b: np.ndarray):
    a, bb = b[:, 2] * b[:, 2] / np.float32(12), b[:, 3] * b[:, 3] / np.float32(12)
    cos, sin = np.cos(b[:, 4]), np.sin(b[:, 4])
    return a * cos * cos + bb * sin * sin, a * sin * sin + bb * cos * cos, (a - bb) * cos * sin


def _probiou(b: np.ndarray) -> np.ndarray:
    """(N, N) probabilistic IoU of rotated boxes (Gaussian Bhattacharyya distance, Ultralytics' eps)."""
    eps = np.float32(1e-7)
    a, bb, c = _covariance(b)
    x, y = b[:, 0], b[:, 1]
    dx, dy = x[:, None] - x[None, :], y[:, None] - y[None, :]
    sa, sb, sc = a[:, None] + a[None, :], bb[:, None] + bb[None, :], c[:, None] + c[None, :]
    den = sa * sb - sc * sc
    t1 = (sa * dy * dy + sb * dx * dx) / (den + eps) * np.float32(0.25)
    t2 = (sc * (-dx) * dy) / (den + eps) * np.float32(0.5)
    det = np.clip(a * bb - c * c, 0, None)
    t3 = np.log(den / (np.float32(4) * np.sqrt(det[:, None] * det[None, :]) + eps) + eps) * np.float32(0.5)
    bd = np.clip(t1 + t2 + t3, eps, np.float32(100))
    return np.float32(1) - np.sqrt(np.float32(1) - np.exp(-bd) + eps)


def _fast_nms(xywhr: np.ndarray, scores: np.ndarray, classes: np.ndarray, thr: float, agnostic: bool) -> np.ndarray:
    """Fast-NMS: indices (best first) of the boxes no higher-scored box of their class overlaps by > thr."""
    if not len(scores):
        return np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    b = xywhr[order].copy()
    if not agnostic:
        b[:, :2] += (classes[order].astype(np.float32) * MAX_WH)[:, None]
    iou = np.triu(_probiou(b), 1)
    return order[~(iou > np.float32(thr)).any(0)]


def _scale(xywhr: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Tensor -> source pixels as ``scale_boxes(xywh=True)``: centre minus padding, all four over the gain."""
    from edgerun.kernels.boxes import geometry_values

    _, _, sx, sy, px, py = geometry_values(geometry)
    out = np.array(xywhr, np.float32, copy=True)
    out[:, 0] = (out[:, 0] - np.float32(px)) / np.float32(sx)
    out[:, 1] = (out[:, 1] - np.float32(py)) / np.float32(sy)
    out[:, 2] /= np.float32(sx)
    out[:, 3] /= np.float32(sy)
    return out


def _corners(xywhr: np.ndarray) -> np.ndarray:
    """(N, 4, 2) corners in Ultralytics' ``xywhr2xyxyxyxy`` order."""
    ctr = xywhr[:, None, :2]
    cos, sin = np.cos(xywhr[:, 4]), np.sin(xywhr[:, 4])
    half_w, half_h = xywhr[:, 2] / 2, xywhr[:, 3] / 2
    v1 = np.stack([half_w * cos, half_w * sin], -1)[:, None]
    v2 = np.stack([-half_h * sin, half_h * cos], -1)[:, None]
    signs = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]], np.float32)[None]  # (v1, v2) per corner
    return (ctr + signs[..., :1] * v1 + signs[..., 1:] * v2).astype(np.float32)
