"""OBB post-processing benchmark: edgerun decode_obb + obb_nms vs a numpy reference (vectorised decode +
Ultralytics-style Fast-NMS on the full probiou matrix with the class offset), on an 8400-anchor head.

Run: ``python benchmarks/bench_obb.py [--samples 41] [--classes 15] [--frac 0.01 0.03 0.1]``.
The head is synthetic but shaped like a detector's (jittered boxes around objects, ``frac`` of the anchors
above the 0.25 threshold, DOTA's 15 classes). Calls are interleaved (order alternating), warm-up excluded;
prints the median / p90 in ms, the numpy/edgerun ratio and the load average.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from edgerun.kernels.obb import MAX_WH, decode_obb, obb_nms

F = np.float32
EPS = F(1e-7)


def raw_head(n: int, nc: int, frac: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 640, (max(1, n // 20), 5))
    obj = rng.integers(0, len(base), n)  # anchors around the same object share its class, like a detector's
    pick = base[obj]
    xy = pick[:, :2] + rng.normal(0, 4, (n, 2))
    wh = 10 + np.abs(pick[:, 2:4]) / 8 + rng.normal(0, 3, (n, 2)).clip(-8, 8)
    t = pick[:, 4] / 640 * np.pi - np.pi / 4 + rng.normal(0, 0.1, n)
    cls = (rng.random((n, nc)) * 0.2).astype(F)
    hot = rng.random(n) < frac
    cls[hot, obj[hot] % nc] = rng.uniform(0.25, 1.0, hot.sum())
    x = np.concatenate([xy, wh, cls, t[:, None]], 1).astype(F)
    return np.ascontiguousarray(x.T[None])


def _cov(b):
    a, bb = b[:, 2] ** 2 / F(12), b[:, 3] ** 2 / F(12)
    co, si = np.cos(b[:, 4]), np.sin(b[:, 4])
    return a * co ** 2 + bb * si ** 2, a * si ** 2 + bb * co ** 2, (a - bb) * co * si


def numpy_probiou(b):
    x, y = b[:, 0], b[:, 1]
    a, bb, c = _cov(b)
    sa, sb, sc = a[:, None] + a[None], bb[:, None] + bb[None], c[:, None] + c[None]
    dx, dy = x[:, None] - x[None], y[:, None] - y[None]
    den = sa * sb - sc ** 2
    t1 = (sa * dy ** 2 + sb * dx ** 2) / (den + EPS) * F(0.25)
    t2 = (sc * -dx * dy) / (den + EPS) * F(0.5)
    d = np.clip(a * bb - c ** 2, 0, None)
    t3 = np.log(den / (F(4) * np.sqrt(d[:, None] * d[None]) + EPS) + EPS) * F(0.5)
    bd = np.clip(t1 + t2 + t3, EPS, F(100))
    return F(1) - np.sqrt(F(1) - np.exp(-bd) + EPS)


def numpy_pipeline(raw, nc, conf=0.25, iou=0.7, max_det=300):
    x = raw[0]
    cls = x[4:4 + nc]
    cand = np.flatnonzero(cls.max(0) > conf)
    sub = x[:, cand]
    score, j = sub[4:4 + nc].max(0), sub[4:4 + nc].argmax(0)
    b = np.stack([sub[0], sub[1], sub[2], sub[3], sub[-1]], 1)
    order = np.argsort(-score, kind="stable")
    b, j = b[order], j[order]
    b[:, :2] += (j.astype(F) * F(MAX_WH))[:, None]
    ious = np.triu(numpy_probiou(b), 1)
    pick = np.flatnonzero((ious > F(iou)).sum(0) <= 0)[:max_det]
    return cand[order[pick]]


def edgerun_pipeline(raw, nc, conf=0.25, iou=0.7, max_det=300):
    c = decode_obb(raw, score_threshold=conf, num_classes=nc)
    return c.index[obb_nms(c.xywhr, c.scores, c.class_id, iou_threshold=iou, max_detections=max_det)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=41)
    ap.add_argument("--classes", type=int, default=15)
    ap.add_argument("--anchors", type=int, default=8400)
    ap.add_argument("--frac", type=float, nargs="+", default=[0.01, 0.03, 0.1])
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()}, CPUs: {os.cpu_count()}")
    print("| anchors | classes | above 0.25 | kept | edgerun median / p90 ms | numpy median / p90 ms | numpy/edgerun |")
    print("|---|---|---|---|---|---|---|")
    for frac in args.frac:
        raw = raw_head(args.anchors, args.classes, frac)
        a, b = edgerun_pipeline(raw, args.classes), numpy_pipeline(raw, args.classes)
        assert np.array_equal(a, b), "edgerun and the numpy reference disagree"
        n_cand = int((raw[0, 4:4 + args.classes].max(0) > 0.25).sum())
        te, tn = [], []
        for i in range(args.samples + 2):
            for name in (("e", "n") if i % 2 == 0 else ("n", "e")):
                t0 = time.perf_counter()
                (edgerun_pipeline if name == "e" else numpy_pipeline)(raw, args.classes)
                (te if name == "e" else tn).append(time.perf_counter() - t0)
        te, tn = np.array(te[2:]) * 1e3, np.array(tn[2:]) * 1e3  # first two: warm-up
        me, mn = np.median(te), np.median(tn)
        print(f"| {args.anchors} | {args.classes} | {n_cand} | {len(a)} | {me:.3f} / {np.percentile(te, 90):.3f} "
              f"| {mn:.3f} / {np.percentile(tn, 90):.3f} | {mn / me:.1f}x |")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
