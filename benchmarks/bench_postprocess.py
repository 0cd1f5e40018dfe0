"""Post-processing benchmark: edgerun decode + nms vs numpy decode + cv2.dnn.NMSBoxesBatched.

Run: ``python benchmarks/bench_postprocess.py [--samples 41] [--json out.json]``.
Real model outputs come from ../shared (skipped with a message when absent). Every case interleaves
edgerun and its peer call by call (order alternating), excludes and reports warm-up, and gives the
median / p90 / p99 of sorted samples (edgerun.runtime.bench.summarize) and the peer/edgerun ratio.
Also: NMS alone at 100 / 1k / 10k candidates, and whether ``parallel=True`` pays for the class-max pass.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from numba import prange

from edgerun.kernels import decode, nms
from edgerun.kernels._jit import jit
from edgerun.kernels.decode import _NO_TABLE, class_max_rows
from edgerun.runtime.bench import interleaved, machine_record

from _shared import SHARED  # noqa: E402 - $EDGERUN_SHARED or ../shared


# ------------------------------------------------------------------------------ pipelines
def ours(out, head, thr, iou=0.7, **kw):
    c = decode(out, head, score_threshold=thr, **kw)
    k = nms(c.xyxy, c.scores, c.class_id, iou_threshold=iou, max_detections=300)
    return c.xyxy[k], c.scores[k], c.class_id[k]


def _cv2_nms(xyxy, scores, cls, iou):
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1)
    keep = np.asarray(cv2.dnn.NMSBoxesBatched(xywh, scores, cls, 0.0, iou), np.int64).reshape(-1)[:300]
    return keep


def peer_v8(out, thr, iou=0.7):
    """Idiomatic numpy: max over classes, argmax only for candidates, xywh for OpenCV."""
    p = out[0].T
    conf = p[:, 4:].max(1)
    m = np.flatnonzero(conf > thr)
    conf, cls = conf[m], p[m, 4:].argmax(1).astype(np.int32)
    b = p[m, :4]
    xyxy = np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], 1)
    k = _cv2_nms(xyxy, conf, cls, iou)
    return xyxy[k], conf[k], cls[k]


def peer_v5(out, thr, iou=0.7):
    p = out[0]
    p = p[p[:, 4] > thr].astype(np.float32)
    conf_all = p[:, 5:] * p[:, 4:5]
    conf = conf_all.max(1)
    m = conf > thr
    conf, cls, b = conf[m], conf_all[m].argmax(1).astype(np.int32), p[m, :4]
    xyxy = np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], 1)
    k = _cv2_nms(xyxy, conf, cls, iou)
    return xyxy[k], conf[k], cls[k]


def model_output(name: str, size: int, dtype=np.float32) -> np.ndarray | None:
    path, img = SHARED / "models" / name, SHARED / "images" / "bus.jpg"
    if not path.exists() or not img.exists():
        print(f"skip {name}: {path} or {img} not found")
        return None
    import onnxruntime as ort
    im = cv2.imread(str(img))
    h, w = im.shape[:2]
    r = min(size / h, size / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    left, top = int(round((size - nw) / 2 - 0.1)), int(round((size - nh) / 2 - 0.1))
    canvas = np.full((size, size, 3), 114, np.uint8)
    canvas[top:top + nh, left:left + nw] = cv2.resize(im, (nw, nh), interpolation=cv2.INTER_LINEAR)
    x = (canvas[..., ::-1].transpose(2, 0, 1)[None] / np.float32(255)).astype(dtype)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def clustered(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.uniform(0, 600, (max(1, n // 40), 4))
    base = centers[rng.integers(0, len(centers), n)]
    xy = base[:, :2] + rng.normal(0, 6, (n, 2))
    wh = 20 + base[:, 2:] / 4 + rng.normal(0, 6, (n, 2)).clip(-15, 15)
    xyxy = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    return xyxy, rng.random(n).astype(np.float32), rng.integers(0, 80, n).astype(np.int32)


# ------------------------------------------------------------------------------ parallel experiment
@jit
def _max_serial(x, nc, best):
    class_max_rows(x, _NO_TABLE, False, nc, best)


@jit(parallel=True)
def _max_parallel(x, nc, best):
    n = x.shape[1]
    chunks = 16
    for t in prange(chunks):
        lo, hi = t * n // chunks, (t + 1) * n // chunks
        for j in range(lo, hi):
            best[j] = -np.inf
        for c in range(nc):
            for j in range(lo, hi):
                if x[4 + c, j] > best[j]:
                    best[j] = x[4 + c, j]


# ------------------------------------------------------------------------------ report
def _same(a, b) -> bool:
    return len(a[0]) == len(b[0]) and np.allclose(a[0], b[0], atol=1e-4) and np.array_equal(a[2], b[2])


def _report(label: str, res: dict, mine: str, peer: str) -> dict:
    m, p = res[mine]["median"], res[peer]["median"]
    print(f"{label:44s} {mine:>10s} {m:8.3f} ms (p90 {res[mine]['p90']:.3f})   {peer:>12s} {p:8.3f} ms "
          f"(p90 {res[peer]['p90']:.3f})   ratio {p / m:6.2f}x")
    return {"case": label, "results": res, "ratio": p / m}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=41)
    ap.add_argument("--json", type=Path, help="write all samples' statistics here")
    args = ap.parse_args()
    n = max(20, args.samples)
    rows = []
    print(json.dumps(machine_record(), default=str))
    v8 = model_output("yolov8n_640_fp32dq.onnx", 640)
    if v8 is not None:
        for thr in (0.25, 0.001):
            assert _same(ours(v8, "yolov8", thr), peer_v8(v8, thr)), "edgerun and peer disagree"
            res = interleaved({"edgerun": lambda: ours(v8, "yolov8", thr),
                               "numpy+cv2": lambda: peer_v8(v8, thr)}, n)
            rows.append(_report(f"yolov8n bus decode+nms thr={thr}", res, "edgerun", "numpy+cv2"))
    v5 = model_output("yolov5n_640_fp16.onnx", 640, np.float16)
    if v5 is not None:
        assert _same(ours(v5, "yolov5", 0.25), peer_v5(v5, 0.25)), "edgerun and peer disagree"
        res = interleaved({"edgerun": lambda: ours(v5, "yolov5", 0.25),
                           "numpy+cv2": lambda: peer_v5(v5, 0.25)}, n)
        rows.append(_report("yolov5n fp16 bus decode+nms thr=0.25", res, "edgerun", "numpy+cv2"))
    for count in (100, 1000, 10000):
        b, s, c = clustered(count)
        assert np.array_equal(nms(b, s, c), _cv2_nms(b, s, c, 0.7))
        res = interleaved({"edgerun": lambda: nms(b, s, c), "cv2": lambda: _cv2_nms(b, s, c, 0.7)}, n)
        rows.append(_report(f"nms {count} clustered candidates, 80 classes", res, "edgerun", "cv2"))
    if v8 is not None:
        x = v8[0]
        best = np.empty(x.shape[1], np.float32)
        res = interleaved({"serial": lambda: _max_serial(x, 80, best),
                           "parallel": lambda: _max_parallel(x, 80, best)}, n)
        rows.append(_report("yolov8n class-max pass (parallel / serial)", res, "parallel", "serial"))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_record(), "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()
