"""Oriented-box (OBB) kernels: decode, probabilistic IoU, rotated Fast-NMS, regularisation, corners, scaling.

Facts this module relies on, read from Ultralytics 8.4.190 (paraphrased, not copied):

- nn/modules/head.py: the YOLOv8/11 ``OBB`` head emits the angle as ``(sigmoid(logit) - 0.25) * pi``
  (range [-pi/4, 3pi/4)); YOLO26's ``OBB26`` emits the raw angle (no sigmoid). Either way the exported
  one-to-many output ``(1, 4+C+1, N)`` holds cx, cy, w, h (input pixels), C sigmoided class scores and the
  angle in radians as its last row: decoding needs no per-family angle transform.
- End2end outputs (NMS-free one-to-one head, and ``nms=True`` exports with in-graph NMS) are ``(1, K, 7)`` rows
  ``cx, cy, w, h, score, class, angle`` (Detect.postprocess concatenates box, score, class, extras); the
  in-graph NMS pads with all-zero rows. ``non_max_suppression`` keeps ``score > conf`` (strict), first
  ``max_det`` rows in model order (already descending).
- utils/nms.py ``non_max_suppression(rotated=True)``: per-anchor best class (first max), ``conf > conf_thres``
  (strict), at most ``max_nms`` by score, boxes ``(cx + c, cy + c, w, h, angle)`` with ``c = class * 7680``
  (0 when agnostic), ``TorchNMS.fast_nms(..., iou_func=batch_probiou)``: sort by score descending, the full
  probiou matrix's upper triangle (diagonal excluded), keep box j iff no earlier box i has IoU(i, j) >
  threshold -- earlier boxes count even when they are themselves suppressed (Fast-NMS, not greedy); then
  ``[:max_det]``.
- utils/metrics.py ``batch_probiou``/``_get_covariance_matrix``: a = w^2/12, b = h^2/12, covariance
  [[a cos^2 + b sin^2, (a - b) cos sin], [., a sin^2 + b cos^2]]; Bhattacharyya distance t1 + t2 + t3 with
  eps = 1e-7 in the denominators and the log, the determinants clamped at 0, clamped to [eps, 100];
  IoU = 1 - sqrt(1 - exp(-bd) + eps). Identical boxes therefore give 1 - sqrt(~2e-7) ~= 0.99955, not 1.
- utils/ops.py ``regularize_rboxes``: swap w and h where ``angle mod pi >= pi/2``, angle = ``angle mod pi/2``
  (floor modulo: result in [0, pi/2)). Note: 8.4.190's OBB predictor no longer calls it (predictions keep
  the head's angle; ``Results.obb.xywhr`` is not canonicalised); it is offered for canonical forms.
- ``xywhr2xyxyxyxy``: v1 = (w/2 cos, w/2 sin), v2 = (-h/2 sin, h/2 cos); corners c+v1+v2, c+v1-v2,
  c-v1-v2, c-v1+v2. ``Results.obb.xyxy`` = min/max of the corners.
- ``scale_boxes(xywh=True)`` (used by the OBB predictor): cx -= pad_x, cy -= pad_y, then cx, w /= gain_x and
  cy, h /= gain_y (per-axis gains of the rounded resize), no clipping; the angle is unchanged.

All arithmetic is float32, like Ultralytics' float32 tensors. Our choices: ties in score order are stable (lower
index first); NaN scores are never kept; the class offset is reproduced (float32 ``cls * 7680`` added to the
centres) so same-class IoUs round as Ultralytics' do, and pairs of different classes are never compared (their
probiou under the offset is ~0, which never exceeds a threshold >= 0).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import checks
from ._jit import inner, jit
from .boxes import geometry_values
from .decode import class_candidates, end2end_rows, finish_candidates, half_split
from .errors import EdgerunValueError
from .nms import order_finite

__all__ = ["ObbCandidates", "decode_obb", "decode_obb_end2end", "probiou", "obb_nms", "regularize_rboxes",
           "xywhr_to_corners", "corners_to_xyxy", "scale_rboxes", "MAX_WH"]

MAX_WH = 7680.0  # Ultralytics' per-class centre offset for class-aware NMS
_F = np.float32
_EPS = _F(1e-7)
_PI = _F(np.pi)
_HALF_PI = _F(np.pi / 2)


class ObbCandidates(NamedTuple):
    """Decoded oriented boxes before NMS, sorted by score descending (ties: lower index first)."""
    xywhr: np.ndarray     # (K, 5) float32: cx, cy, w, h in tensor pixels, angle in radians
    scores: np.ndarray    # (K,) float32
    class_id: np.ndarray  # (K,) int32
    index: np.ndarray     # (K,) int32: anchor/row index in the raw output


# ---------------------------------------------------------------- compiled helpers
@jit
def _decode_obb_kernel(x, table, half, nc, thr, cap):
    """(4+C+E, N) head, angle in the last row -> candidates (see ``decode_obb``)."""
    arow = x.shape[0] - 1
    idx, sc, cl = class_candidates(x, table, half, 4, nc, thr)
    m = idx.shape[0]
    bx = np.empty((m, 5), np.float32)
    for t in range(m):
        j = idx[t]
        for q in range(4):
            bx[t, q] = table[np.intp(x[q, j])] if half else np.float32(x[q, j])
        bx[t, 4] = table[np.intp(x[arow, j])] if half else np.float32(x[arow, j])
    return finish_candidates(bx, sc, cl, idx, cap)


@jit
def _decode_obb_e2e_kernel(x, table, half, thr, cap):
    """(K, 7+) rows cx, cy, w, h, score, class, angle -> candidates (confidence filter only)."""
    idx, sc, cl = end2end_rows(x, table, half, thr)
    bx = np.empty((idx.shape[0], 5), np.float32)
    for t in range(idx.shape[0]):
        j = idx[t]
        for q in range(4):
            bx[t, q] = table[np.intp(x[j, q])] if half else np.float32(x[j, q])
        bx[t, 4] = table[np.intp(x[j, 6])] if half else np.float32(x[j, 6])
    return finish_candidates(bx, sc, cl, idx, cap)


@inner
def _covariance(b, cov):
    """cov[i] = (a, b, c) of box i: Gaussian of a w x h box rotated by the angle, float32."""
    twelve = np.float32(12.0)
    for i in range(b.shape[0]):
        a = b[i, 2] * b[i, 2] / twelve
        bb = b[i, 3] * b[i, 3] / twelve
        co, si = np.cos(b[i, 4]), np.sin(b[i, 4])
        co2, si2 = co * co, si * si
        cov[i, 0] = a * co2 + bb * si2
        cov[i, 1] = a * si2 + bb * co2
        cov[i, 2] = (a - bb) * co * si


@inner
def _pair_iou(x1, y1, a1, b1, c1, x2, y2, a2, b2, c2):
    """Ultralytics' probiou of two boxes from their centres and covariances, float32."""
    sa, sb, sc = a1 + a2, b1 + b2, c1 + c2
    den = sa * sb - sc * sc
    dy, dx = y1 - y2, x1 - x2
    t1 = ((sa * (dy * dy) + sb * (dx * dx)) / (den + _EPS)) * np.float32(0.25)  # torch's op order
    t2 = ((sc * (x2 - x1) * dy) / (den + _EPS)) * np.float32(0.5)
    d1 = max(a1 * b1 - c1 * c1, np.float32(0.0))
    d2 = max(a2 * b2 - c2 * c2, np.float32(0.0))
    t3 = np.log(den / (np.float32(4.0) * np.sqrt(d1 * d2) + _EPS) + _EPS) * np.float32(0.5)
    bd = t1 + t2 + t3
    if bd < _EPS:
        bd = _EPS
    elif bd > np.float32(100.0):
        bd = np.float32(100.0)  # NaN stays NaN (neither comparison holds)
    return np.float32(1.0) - np.sqrt(np.float32(1.0) - np.exp(-bd) + _EPS)


@jit
def _probiou_kernel(a, b, out):
    ca = np.empty((a.shape[0], 3), np.float32)
    cb = np.empty((b.shape[0], 3), np.float32)
    _covariance(a, ca)
    _covariance(b, cb)
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            out[i, j] = _pair_iou(a[i, 0], a[i, 1], ca[i, 0], ca[i, 1], ca[i, 2],
                                  b[j, 0], b[j, 1], cb[j, 0], cb[j, 1], cb[j, 2])


@jit
def _obb_nms_kernel(xywhr, scores, cls, n_cls, offset, iou_threshold, max_det):
    """Fast-NMS over same-class pairs; ``offset[i]`` is added to box i's centre (Ultralytics' class offset)."""
    order = order_finite(scores)
    m = order.shape[0]
    thr = np.float32(iou_threshold)
    cx, cy = np.empty(m, np.float32), np.empty(m, np.float32)
    bs = np.empty((m, 5), np.float32)
    for p in range(m):
        i = order[p]
        for q in range(5):
            bs[p, q] = xywhr[i, q]
        cx[p] = xywhr[i, 0] + offset[i]
        cy[p] = xywhr[i, 1] + offset[i]
    cov = np.empty((m, 3), np.float32)
    _covariance(bs, cov)
    prev = np.empty(m, np.int64)  # previous position of the same class (suppressed ones included)
    head = np.full(n_cls, -1, np.int64)
    cap = min(max_det, m)
    keep = np.empty(cap, np.int64)
    nk = 0
    for p in range(m):
        if nk >= cap:
            break
        c = cls[order[p]]
        ok = True
        q = head[c]
        while q >= 0:
            v = _pair_iou(cx[q], cy[q], cov[q, 0], cov[q, 1], cov[q, 2],
                          cx[p], cy[p], cov[p, 0], cov[p, 1], cov[p, 2])
            if v > thr:
                ok = False
                break
            q = prev[q]
        prev[p] = head[c]
        head[c] = p
        if ok:
            keep[nk] = order[p]
            nk += 1
    return keep[:nk].copy()


@jit
def _regularize_kernel(b, out):
    for i in range(b.shape[0]):
        x, y, w, h, t = b[i, 0], b[i, 1], b[i, 2], b[i, 3], b[i, 4]
        swap = (t % _PI) >= _HALF_PI
        out[i, 0], out[i, 1] = x, y
        out[i, 2], out[i, 3] = (h, w) if swap else (w, h)
        out[i, 4] = t % _HALF_PI


@jit
def _corners_kernel(b, out):
    two = np.float32(2.0)
    for i in range(b.shape[0]):
        cx, cy, w, h, t = b[i, 0], b[i, 1], b[i, 2], b[i, 3], b[i, 4]
        co, si = np.cos(t), np.sin(t)
        v1x, v1y = w / two * co, w / two * si
        v2x, v2y = -h / two * si, h / two * co
        out[i, 0, 0], out[i, 0, 1] = cx + v1x + v2x, cy + v1y + v2y
        out[i, 1, 0], out[i, 1, 1] = cx + v1x - v2x, cy + v1y - v2y
        out[i, 2, 0], out[i, 2, 1] = cx - v1x - v2x, cy - v1y - v2y
        out[i, 3, 0], out[i, 3, 1] = cx - v1x + v2x, cy - v1y + v2y


@jit
def _bounds_kernel(c, out):
    for i in range(c.shape[0]):
        x1, y1, x2, y2 = c[i, 0, 0], c[i, 0, 1], c[i, 0, 0], c[i, 0, 1]
        for k in range(1, 4):
            x, y = c[i, k, 0], c[i, k, 1]
            x1, x2 = min(x1, x), max(x2, x)
            y1, y2 = min(y1, y), max(y2, y)
        out[i, 0], out[i, 1], out[i, 2], out[i, 3] = x1, y1, x2, y2


@jit
def _scale_rboxes_kernel(b, pad_x, pad_y, gain_x, gain_y, out):
    for i in range(b.shape[0]):
        out[i, 0] = (b[i, 0] - pad_x) / gain_x
        out[i, 1] = (b[i, 1] - pad_y) / gain_y
        out[i, 2] = b[i, 2] / gain_x
        out[i, 3] = b[i, 3] / gain_y
        out[i, 4] = b[i, 4]


# ---------------------------------------------------------------- validation + public API
def _raw2d(output, want: str) -> np.ndarray:
    x = checks.array("output", output, (np.float32, np.float16))
    if x.ndim == 3 and x.shape[0] == 1:
        return x[0]
    if x.ndim == 2:
        return x
    raise EdgerunValueError(f"output: expected shape {want} (batch 1, or 2-D without the batch dim), got {x.shape}")


def _rboxes(name: str, b) -> np.ndarray:
    b = checks.array(name, b, np.float32, 2)
    if b.shape[1] != 5:
        raise EdgerunValueError(f"{name}: expected shape (N, 5) cx, cy, w, h, angle, got {b.shape}")
    return b


def decode_obb(output: np.ndarray, *, score_threshold: float = 0.25, max_candidates: int = 30000,
               num_classes: int | None = None) -> ObbCandidates:
    """Decode a raw one-to-many OBB head ``(1, 4+C+1, N)`` (float32 or float16) into candidates.

    Rows: cx, cy, w, h (input pixels), C class scores, angle (radians, last row). Per anchor the best class
    (first maximum); a candidate needs score > ``score_threshold`` (strict); NaN scores and non-finite
    boxes/angles are dropped; sorted by score (ties: lower anchor) and capped at ``max_candidates``.
    ``num_classes`` defaults to rows - 5 (the angle is always the last row).
    """
    x = _raw2d(output, "(1, 4+C+1, N)")
    thr = checks.finite_float("score_threshold", score_threshold, 0.0, 1.0)
    cap = checks.positive_int("max_candidates", max_candidates)
    rows = x.shape[0]
    if num_classes is None:
        if rows < 6:
            raise EdgerunValueError(f"output: expected (1, 4+C+1, N) with C >= 1 for an OBB head, got {output.shape}")
        if rows > x.shape[1] and rows >= 1024:
            raise EdgerunValueError(f"output: expected (1, 4+C+1, N) channels first for an OBB head, got "
                                    f"{output.shape}; transpose it, or pass num_classes if it is right")
        nc = rows - 5
    else:
        nc = checks.positive_int("num_classes", num_classes)
        if nc + 5 > rows:
            raise EdgerunValueError(f"num_classes: expected <= {rows - 5} for OBB output shape {output.shape} "
                                    f"(4 box rows + C + angle), got {nc}")
    return ObbCandidates(*_decode_obb_kernel(*half_split(x), nc, thr, cap))


def decode_obb_end2end(output: np.ndarray, *, score_threshold: float = 0.25, max_candidates: int = 300
                       ) -> ObbCandidates:
    """Decode end2end OBB rows ``(1, K, 7)`` cx, cy, w, h, score, class, angle (NMS-free head or ``nms=True``).

    Confidence filter only (score > ``score_threshold``, strict; zero-padded rows never pass), rows with a
    non-finite value or class dropped, sorted by score (stable: model order kept), at most ``max_candidates``.
    """
    x = _raw2d(output, "(1, K, 7)")
    if x.shape[1] < 7:
        raise EdgerunValueError(f"output: expected (1, K, 7) cx, cy, w, h, score, class, angle, got {output.shape}")
    thr = checks.finite_float("score_threshold", score_threshold, 0.0, 1.0)
    cap = checks.positive_int("max_candidates", max_candidates)
    return ObbCandidates(*_decode_obb_e2e_kernel(*half_split(x), thr, cap))


def probiou(a: np.ndarray, b: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """Ultralytics' ``batch_probiou`` of (N, 5) and (M, 5) float32 xywhr boxes -> (N, M) float32 (eps 1e-7).

    Identical boxes give ~0.99955 (the eps floor), far boxes 0; NaN inputs give NaN.
    """
    a, b = _rboxes("a", a), _rboxes("b", b)
    out = checks.out_buffer("out", out, (a.shape[0], b.shape[0]), np.float32)
    if out.size:
        _probiou_kernel(a, b, out)
    return out


def _class_ids(class_id, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(original ids, dense ids in [0, n_cls), n_cls)."""
    class_id = checks.array("class_id", class_id, (np.int32, np.int64), 1)
    if class_id.shape[0] != n:
        raise EdgerunValueError(f"class_id: expected shape ({n},) to match xywhr, got {class_id.shape}")
    if n == 0:
        return class_id, np.zeros(0, np.int64), 1
    uniq, inverse = np.unique(class_id, return_inverse=True)
    return class_id, inverse.astype(np.int64).reshape(-1), len(uniq)


def obb_nms(xywhr: np.ndarray, scores: np.ndarray, class_id: np.ndarray | None = None, *,
            iou_threshold: float = 0.7, max_detections: int = 300, class_agnostic: bool = False) -> np.ndarray:
    """Ultralytics' rotated NMS: probiou Fast-NMS; returns int64 indices of kept boxes by descending score.

    ``xywhr`` (N, 5) float32, ``scores`` (N,) float32 (NaN never kept), ``class_id`` (N,) int32/int64.
    Box j is dropped when any higher-scored box of its class (all boxes if ``class_agnostic`` or no
    ``class_id``) has probiou > ``iou_threshold``, even one that is itself dropped. Ties: lower index first.
    Class-aware IoUs are computed on centres offset by ``class * MAX_WH`` in float32, as Ultralytics does.
    At most ``max_detections`` indices.
    """
    xywhr = _rboxes("xywhr", xywhr)
    n = xywhr.shape[0]
    scores = checks.array("scores", scores, np.float32, 1)
    if scores.shape[0] != n:
        raise EdgerunValueError(f"scores: expected shape ({n},) to match xywhr, got {scores.shape}")
    iou = checks.finite_float("iou_threshold", iou_threshold, 0.0, 1.0)
    max_det = checks.positive_int("max_detections", max_detections)
    if class_id is not None:
        orig, dense, n_cls = _class_ids(class_id, n)
    if class_id is None or class_agnostic:
        dense, n_cls, offset = np.zeros(n, np.int64), 1, np.zeros(n, np.float32)
    else:
        offset = orig.astype(np.float32) * np.float32(MAX_WH)
    if n == 0:
        return np.zeros(0, np.int64)
    return _obb_nms_kernel(xywhr, scores, dense, n_cls, offset, iou, max_det)


def regularize_rboxes(xywhr: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """Ultralytics' ``regularize_rboxes``: swap w, h where angle mod pi >= pi/2; angle -> angle mod pi/2.

    (N, 5) float32 -> (N, 5) float32 with angles in [0, pi/2). ``out`` may be ``xywhr`` (in place).
    """
    xywhr = _rboxes("xywhr", xywhr)
    out = checks.out_buffer("out", out, xywhr.shape, np.float32)
    _regularize_kernel(xywhr, out)
    return out


def xywhr_to_corners(xywhr: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """(N, 5) float32 xywhr -> (N, 4, 2) float32 corners in Ultralytics' ``xywhr2xyxyxyxy`` order
    (first the corner at +w/2, +h/2 in the box frame)."""
    xywhr = _rboxes("xywhr", xywhr)
    out = checks.out_buffer("out", out, (xywhr.shape[0], 4, 2), np.float32)
    _corners_kernel(xywhr, out)
    return out


def corners_to_xyxy(corners: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """(N, 4, 2) float32 corners -> (N, 4) float32 axis-aligned bounds x1, y1, x2, y2 (``Results.obb.xyxy``)."""
    corners = checks.array("corners", corners, np.float32, 3)
    if corners.shape[1:] != (4, 2):
        raise EdgerunValueError(f"corners: expected shape (N, 4, 2), got {corners.shape}")
    out = checks.out_buffer("out", out, (corners.shape[0], 4), np.float32)
    _bounds_kernel(corners, out)
    return out


def scale_rboxes(xywhr: np.ndarray, geometry, *, out: np.ndarray | None = None) -> np.ndarray:
    """Tensor-pixel rotated boxes (N, 5) float32 -> source-image pixels, as Ultralytics' ``scale_boxes(xywh=True)``.

    cx = (cx - pad_x) / scale_x, cy = (cy - pad_y) / scale_y, w /= scale_x, h /= scale_y, angle unchanged; no
    clipping. ``geometry`` is a ``kernels.preprocess.Geometry`` (or any object with its fields). ``out`` may
    be ``xywhr``.
    """
    xywhr = _rboxes("xywhr", xywhr)
    _, _, sx, sy, px, py = geometry_values(geometry)
    out = checks.out_buffer("out", out, xywhr.shape, np.float32)
    _scale_rboxes_kernel(xywhr, _F(px), _F(py), _F(sx), _F(sy), out)
    return out
