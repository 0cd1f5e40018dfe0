"""Decode raw YOLO detection heads into score-sorted candidates: one compiled kernel call per head.

Semantics follow Ultralytics' ``non_max_suppression`` (see the fact list at the top of nms.py):
a candidate needs a score > ``score_threshold`` (strict), the class is the first maximum, candidates are
sorted by score descending (ties: lower anchor index first) and capped at ``max_candidates``.

Non-finite values: an anchor with a NaN among the scores it is ranked by is not a candidate (torch's
``amax`` propagates NaN, so Ultralytics drops it too); +inf scores and non-finite box coordinates (NaN,
inf, ``exp`` overflow in YOLOX) drop the anchor as well, so candidates never hold NaN or inf.

float16 outputs: Numba has no CPU float16, so the kernels read the raw uint16 bits through a 65536-entry
float32 table (exact widening). Only the values a head actually reads are converted; YOLOv5's objectness
pre-filter then touches one column of 85. Box arithmetic is float32 like Ultralytics' float32 path.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from . import checks
from ._jit import inner, jit
from .errors import EdgerunTypeError, EdgerunValueError
from .nms import sort_desc

__all__ = ["Candidates", "decode", "HEADS"]

HEADS = ("yolov8", "yolov5", "yolox", "end2end", "dfl")
_HALF = np.float32(0.5)
_INF = np.float32(np.inf)


class Candidates(NamedTuple):
    """Decoded detections before NMS, sorted by score descending."""
    xyxy: np.ndarray      # (K, 4) float32, tensor pixels
    scores: np.ndarray    # (K,) float32
    class_id: np.ndarray  # (K,) int32
    index: np.ndarray     # (K,) int32: anchor/row index in the raw output


@functools.lru_cache(maxsize=1)
def _f16_table() -> np.ndarray:
    """float32 value of every float16 bit pattern."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


_NO_TABLE = np.zeros(1, np.float32)

# Kernels take ``x`` (float32, or float16 bits as uint16), ``table`` and ``half``. Hot loops read with the
# inline expression ``table[np.intp(x[r, c])] if half else np.float32(x[r, c])``: a helper call per
# element would pay Numba's array refcounting on every call (measured 20x slower). Each helper below runs
# a whole loop per call instead.


# ---------------------------------------------------------------- compiled helpers
@inner
def score_ok(s, thr) -> bool:
    return s > thr and s < _INF  # False for NaN


@inner
def class_max_rows(x, table, half, first, nc, best):
    """Per-anchor max over class rows first..first+nc of a (first+C, N) head, row by row (vectorises; NaN
    ignored here, ``rescan_classes`` catches it for the few anchors above the threshold)."""
    best[:] = -_INF
    for c in range(nc):
        r = first + c
        for j in range(best.shape[0]):
            v = table[np.intp(x[r, j])] if half else np.float32(x[r, j])
            if v > best[j]:
                best[j] = v


@inner
def rescan_classes(x, table, half, idx, first, nc):
    """For anchors ``idx`` of a (first+C, N) head: first argmax class and score (rows first..first+nc);
    NaN anywhere -> score NaN."""
    sc, cl = np.empty(idx.shape[0], np.float32), np.empty(idx.shape[0], np.int32)
    for t in range(idx.shape[0]):
        j = idx[t]
        best, arg = -_INF, 0
        for c in range(nc):
            v = table[np.intp(x[first + c, j])] if half else np.float32(x[first + c, j])
            if v > best or v != v:
                best, arg = v, c
                if v != v:
                    break
        sc[t], cl[t] = best, arg
    return sc, cl


@inner
def _col_gt(x, table, half, col, thr):
    """Rows whose value in ``col`` is > thr (NaN is not)."""
    out = np.empty(x.shape[0], np.int64)
    k = 0
    for j in range(x.shape[0]):
        v = table[np.intp(x[j, col])] if half else np.float32(x[j, col])
        if v > thr:
            out[k] = j
            k += 1
    return out[:k]


@inner
def _score_rows(x, table, half, rows, nc, thr):
    """Candidates among ``rows`` of an (N, 5+C) head: score = max_c obj*cls_c (first max, NaN -> none)."""
    m = rows.shape[0]
    idx, sc, cl = np.empty(m, np.int32), np.empty(m, np.float32), np.empty(m, np.int32)
    k = 0
    for t in range(m):
        j = rows[t]
        obj = table[np.intp(x[j, 4])] if half else np.float32(x[j, 4])
        best, arg = -_INF, 0
        for c in range(nc):
            v = obj * (table[np.intp(x[j, 5 + c])] if half else np.float32(x[j, 5 + c]))
            if v > best or v != v:
                best, arg = v, c
                if v != v:
                    break
        if score_ok(best, thr):
            idx[k], sc[k], cl[k] = j, best, arg
            k += 1
    return idx[:k], sc[:k], cl[:k]


@inner
def _gather4(x, table, half, idx, by_column):
    """Values 0..3 of each anchor in ``idx``: rows 0..3 of column j (by_column) or columns 0..3 of row j."""
    v = np.empty((idx.shape[0], 4), np.float32)
    for t in range(idx.shape[0]):
        j = idx[t]
        for q in range(4):
            e = x[q, j] if by_column else x[j, q]
            v[t, q] = table[np.intp(e)] if half else np.float32(e)
    return v


@inner
def _xywh_to_xyxy(v):
    """In place, float32: x1y1 = xy - wh/2, x2y2 = xy + wh/2 (Ultralytics xywh2xyxy)."""
    for t in range(v.shape[0]):
        hw, hh = v[t, 2] * _HALF, v[t, 3] * _HALF
        cx, cy = v[t, 0], v[t, 1]
        v[t, 0], v[t, 1], v[t, 2], v[t, 3] = cx - hw, cy - hh, cx + hw, cy + hh


@inner
def finish_candidates(bx, sc, cl, ix, cap):
    """Drop rows of ``bx`` (K, D) float32 with a non-finite value, sort by score (stable), keep at most ``cap``
    (shared by the detect and OBB decoders)."""
    n, d = sc.shape[0], bx.shape[1]
    good = np.empty(n, np.int64)
    k = 0
    for t in range(n):
        ok = True
        for q in range(d):
            if not np.isfinite(bx[t, q]):
                ok = False
        if ok:
            good[k] = t
            k += 1
    s = np.empty(k, np.float32)
    for t in range(k):
        s[t] = sc[good[t]]
    order = sort_desc(s)
    m = min(k, cap)
    ob, os_ = np.empty((m, d), np.float32), np.empty(m, np.float32)
    oc, oi = np.empty(m, np.int32), np.empty(m, np.int32)
    for t in range(m):
        j = good[order[t]]
        for q in range(d):
            ob[t, q] = bx[j, q]
        os_[t], oc[t], oi[t] = sc[j], cl[j], ix[j]
    return ob, os_, oc, oi


# ---------------------------------------------------------------- head kernels
@inner
def class_candidates(x, table, half, first, nc, thr):
    """Anchors of a (first+C+E, N) head whose best class score (rows first..first+nc) is > thr: (index
    int32, score, class int32) in anchor order; an anchor with a NaN class score is dropped (torch amax
    propagates NaN). Shared by the detect, DFL and OBB decoders."""
    n = x.shape[1]
    best = np.empty(n, np.float32)
    class_max_rows(x, table, half, first, nc, best)
    idx = np.empty(n, np.int32)
    k = 0
    for j in range(n):
        if score_ok(best[j], thr):
            idx[k] = j
            k += 1
    sc, cl = rescan_classes(x, table, half, idx[:k], first, nc)
    keep = np.empty(k, np.int64)
    m = 0
    for t in range(k):
        if sc[t] == sc[t]:
            keep[m] = t
            m += 1
    return idx[keep[:m]], sc[keep[:m]], cl[keep[:m]]


@jit
def _decode_v8(x, table, half, nc, thr, cap):
    idx, sc, cl = class_candidates(x, table, half, 4, nc, thr)
    bx = _gather4(x, table, half, idx, True)
    _xywh_to_xyxy(bx)
    return finish_candidates(bx, sc, cl, idx, cap)


@inner
def _dfl_boxes(x, table, half, idx, reg, strides, in_h, in_w):
    """Box of each anchor in ``idx`` of a DFL head (rows 0..4*reg: distribution logits of the left, top,
    right, bottom distances), as Ultralytics' graph computes it in float32: softmax over the ``reg`` bins,
    expectation sum(p_i * i), ``dist2bbox`` (xywh) around the cell centre, times the level's stride.
    Levels are the stride grids ceil(in / s) in order, rows then columns."""
    bx = np.empty((idx.shape[0], 4), np.float32)
    d = np.empty(4, np.float32)
    e = np.empty(reg, np.float32)
    for t in range(idx.shape[0]):
        s, gx, gy = _cell(idx[t], strides, in_h, in_w, True)
        ax, ay = np.float32(gx) + _HALF, np.float32(gy) + _HALF
        for side in range(4):
            r0 = side * reg
            m = -_INF
            for i in range(reg):
                v = table[np.intp(x[r0 + i, idx[t]])] if half else np.float32(x[r0 + i, idx[t]])
                e[i] = v
                if v > m:
                    m = v
            tot = np.float32(0)
            for i in range(reg):
                e[i] = np.float32(np.exp(e[i] - m))
                tot += e[i]
            acc = np.float32(0)
            for i in range(reg):
                acc += (e[i] / tot) * np.float32(i)
            d[side] = acc
        x1, y1, x2, y2 = ax - d[0], ay - d[1], ax + d[2], ay + d[3]
        sf = np.float32(s)
        bx[t, 0], bx[t, 1] = (x1 + x2) * _HALF * sf, (y1 + y2) * _HALF * sf
        bx[t, 2], bx[t, 3] = (x2 - x1) * sf, (y2 - y1) * sf
    return bx


@jit
def _decode_dfl(x, table, half, nc, reg, thr, logit_thr, cap, strides, in_h, in_w):
    # class rows hold logits: pre-filter on the logit (sigmoid is monotonic), then the exact score test
    idx, lg, cl = class_candidates(x, table, half, 4 * reg, nc, logit_thr)
    keep = np.empty(idx.shape[0], np.int64)
    sc = np.empty(idx.shape[0], np.float32)
    k = 0
    for t in range(idx.shape[0]):
        v = np.float32(1) / (np.float32(1) + np.float32(np.exp(-lg[t])))
        if score_ok(v, thr):
            keep[k], sc[k] = t, v
            k += 1
    idx, sc, cl = idx[keep[:k]], sc[:k], cl[keep[:k]]
    bx = _dfl_boxes(x, table, half, idx, reg, strides, in_h, in_w)
    _xywh_to_xyxy(bx)
    return finish_candidates(bx, sc, cl, idx, cap)


@jit
def _decode_v5(x, table, half, nc, thr, cap):
    rows = _col_gt(x, table, half, 4, thr)  # YOLOv5's objectness pre-filter
    idx, sc, cl = _score_rows(x, table, half, rows, nc, thr)
    bx = _gather4(x, table, half, idx, False)
    _xywh_to_xyxy(bx)
    return finish_candidates(bx, sc, cl, idx, cap)


@inner
def _cell(j, strides, in_h, in_w, ceil):
    """Anchor ``j`` of per-stride grids over ``in_h`` x ``in_w`` (levels in order, rows then columns;
    ceil(in / s) cells per axis when ``ceil``, else floor): (stride, column, row)."""
    local = np.int64(j)
    s, ws = np.int64(1), np.int64(1)
    for q in range(strides.shape[0]):
        s = np.int64(strides[q])
        hs, ws = ((in_h + s - 1) // s, (in_w + s - 1) // s) if ceil else (in_h // s, in_w // s)
        if local < hs * ws:
            break
        local -= hs * ws
    return s, local % ws, local // ws


@inner
def _yolox_boxes(bx, idx, strides, in_h, in_w):
    """YOLOX demo_postprocess, in place: xy = (p + grid) * s, wh = exp(p) * s, float64 math stored as
    float32 (grid: per stride, rows then columns). exp is taken in float64, so results may differ from
    numpy's float32 exp by 1 ulp; overflow gives inf (dropped later)."""
    for t in range(idx.shape[0]):
        s, gx, gy = _cell(idx[t], strides, in_h, in_w, False)
        bx[t, 0] = np.float32((np.float64(bx[t, 0]) + gx) * s)
        bx[t, 1] = np.float32((np.float64(bx[t, 1]) + gy) * s)
        bx[t, 2] = np.float32(np.exp(np.float64(bx[t, 2])) * s)
        bx[t, 3] = np.float32(np.exp(np.float64(bx[t, 3])) * s)


@jit
def _decode_yolox(x, table, half, nc, thr, cap, strides, in_h, in_w):
    idx, sc, cl = _score_rows(x, table, half, np.arange(x.shape[0]), nc, thr)
    bx = _gather4(x, table, half, idx, False)
    _yolox_boxes(bx, idx, strides, in_h, in_w)
    _xywh_to_xyxy(bx)
    return finish_candidates(bx, sc, cl, idx, cap)


@inner
def end2end_rows(x, table, half, thr):
    """Rows of a (K, 6+) end2end output (.., score at 4, class at 5, ..) with score > thr and a finite int32
    class: (index int32, score, class int32) in row order (shared by the detect and OBB decoders)."""
    n = x.shape[0]
    idx, sc, cl = np.empty(n, np.int32), np.empty(n, np.float32), np.empty(n, np.int32)
    k = 0
    for j in range(n):
        s = table[np.intp(x[j, 4])] if half else np.float32(x[j, 4])
        c = table[np.intp(x[j, 5])] if half else np.float32(x[j, 5])
        if score_ok(s, thr) and c >= -2.0**31 and c < 2.0**31:  # also rejects NaN classes
            idx[k], sc[k], cl[k] = j, s, np.int32(c)
            k += 1
    return idx[:k], sc[:k], cl[:k]


@jit
def _decode_e2e(x, table, half, thr, cap):
    idx, sc, cl = end2end_rows(x, table, half, thr)
    bx = _gather4(x, table, half, idx, False)
    return finish_candidates(bx, sc, cl, idx, cap)


# ---------------------------------------------------------------- validation + public API
_SHAPES = {"yolov8": "(1, 4+C+E, N)", "dfl": "(1, 4*reg_max+C, N)", "end2end": "(1, N, 6)"}  # else (1, N, 5+C)


def _as_2d(output, head: str) -> np.ndarray:
    want = _SHAPES.get(head, "(1, N, 5+C)")
    x = checks.array("output", output, (np.float32, np.float16))
    if x.ndim == 3 and x.shape[0] == 1:
        return x[0]
    if x.ndim == 2:
        return x
    raise EdgerunValueError(f"output: expected shape {want} for head {head!r} (batch 1, or 2-D without the "
                            f"batch dim), got {x.shape}")


def _num_classes(num_classes, have: int, head: str, shape) -> int:
    if num_classes is None:
        if have < 1:
            raise EdgerunValueError(f"output: head {head!r} needs at least one class score, got shape {shape}")
        return have
    nc = checks.positive_int("num_classes", num_classes)
    if nc > have:
        raise EdgerunValueError(f"num_classes: expected <= {have} for output shape {shape} (head {head!r}), "
                                f"got {nc}")
    return nc


def _grid(strides, input_hw, n: int, shape, head: str) -> tuple[np.ndarray, int, int]:
    if not isinstance(strides, (tuple, list)) or not strides:
        raise EdgerunTypeError(f"strides: expected a non-empty tuple of ints, got {strides!r}")
    if not isinstance(input_hw, (tuple, list)) or len(input_hw) != 2:
        raise EdgerunTypeError(f"input_hw: expected (height, width), got {input_hw!r}")
    st = tuple(checks.positive_int("strides", s) for s in strides)
    in_h, in_w = (checks.positive_int("input_hw", v) for v in input_hw)
    if head == "dfl":  # Ultralytics' stride-2 convs: ceil(in / s) cells per axis
        expected = sum(-(-in_h // s) * -(-in_w // s) for s in st)
    else:
        expected = sum((in_h // s) * (in_w // s) for s in st)
    if expected != n:
        raise EdgerunValueError(f"output: expected {expected} anchors for input_hw={(in_h, in_w)} and strides "
                                f"{st} (head {head!r}), got shape {shape}")
    return np.asarray(st, np.int64), in_h, in_w


def _logit(thr: float) -> np.float32:
    """A pre-filter bound below the logit of ``thr`` (the exact test runs on the sigmoid): every logit
    whose float32 sigmoid is > thr is above it."""
    if thr <= 0.0:
        return np.float32(-np.inf)
    if thr >= 1.0:
        return np.float32(np.inf)
    return np.float32(np.log(thr / (1.0 - thr)) - 1e-3)


def half_split(x: np.ndarray) -> tuple:
    """(x, table, half) as the kernels take them: float16 is passed as its uint16 bits plus the table."""
    if x.dtype == np.float16:
        return x.view(np.uint16), _f16_table(), True
    return x, _NO_TABLE, False


def decode(output: np.ndarray, head: str, *, score_threshold: float = 0.25, max_candidates: int = 30000,
           num_classes: int | None = None, strides=(8, 16, 32), input_hw=(640, 640),
           reg_max: int = 16) -> Candidates:
    """Decode a raw detection head into candidates sorted by score (ties: lower index), capped.

    ``head``: "yolov8" (1, 4+C+E, N) sigmoided class rows; "yolov5" (1, N, 5+C) score = obj*cls with the
    obj > threshold pre-filter; "yolox" (1, N, 5+C) raw grid over ``input_hw`` and ``strides``;
    "end2end" (1, K, 6+) x1, y1, x2, y2, score, class; "dfl" (1, 4*reg_max+C, N) Ultralytics' head before
    its decode (box distribution logits, class logits) over ``input_hw`` and ``strides``: the DFL
    softmax and ``dist2bbox`` run only for anchors whose best class passes the threshold.
    ``output`` float32 or float16, any strides.
    """
    if head not in HEADS:
        raise EdgerunValueError(f"head: expected one of {', '.join(HEADS)}, got {head!r}")
    x = _as_2d(output, head)
    thr = checks.finite_float("score_threshold", score_threshold, 0.0, 1.0)
    cap = checks.positive_int("max_candidates", max_candidates)
    rows, cols = x.shape
    if head == "yolov8":
        if num_classes is None and rows > cols and rows >= 1024:  # looks like (1, N, 4+C)
            raise EdgerunValueError(f"output: expected (1, 4+C+E, N) with channels first for head 'yolov8', "
                                    f"got {output.shape}; transpose it, or pass num_classes if it is right")
        nc = _num_classes(num_classes, rows - 4, head, output.shape)
        return Candidates(*_decode_v8(*half_split(x), nc, thr, cap))
    if head == "dfl":
        reg = checks.positive_int("reg_max", reg_max)
        nc = _num_classes(num_classes, rows - 4 * reg, head, output.shape)
        if rows != 4 * reg + nc:
            raise EdgerunValueError(f"output: expected {4 * reg + nc} rows (4*reg_max + num_classes, reg_max={reg}) "
                                    f"for head 'dfl', got shape {output.shape}")
        grid = _grid(strides, input_hw, cols, output.shape, head)
        return Candidates(*_decode_dfl(*half_split(x), nc, reg, thr, _logit(thr), cap, *grid))
    if head == "end2end":
        if cols < 6:
            raise EdgerunValueError(f"output: expected (1, K, 6) for head 'end2end', got {output.shape}")
        return Candidates(*_decode_e2e(*half_split(x), thr, cap))
    nc = _num_classes(num_classes, cols - 5, head, output.shape)
    if head == "yolov5":
        return Candidates(*_decode_v5(*half_split(x), nc, thr, cap))
    grid = _grid(strides, input_hw, rows, output.shape, head)
    return Candidates(*_decode_yolox(*half_split(x), nc, thr, cap, *grid))
