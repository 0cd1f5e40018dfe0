"""Soak: N frames through Detector.detect; RSS growth, open file descriptors and latency drift.

    python benchmarks/soak.py --frames 100000 [--model ../shared/models/yolov8n_320_int8dyn.onnx]

Reports RSS and fd count after warm-up and at the end (and the peak), latency p50/p99 of the
first and last windows (10,000 frames, or a fifth of the run if shorter). Frames cycle through
the first frames of ../shared/video/vtest.avi. tests/reliability/test_soak.py runs a short version.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from edgerun.runtime.bench import open_fds, rss_mb

ROOT = Path(__file__).resolve().parents[1]
from _shared import SHARED  # noqa: E402 - $EDGERUN_SHARED or ../shared


def video_frames(n: int = 48, path: Path = SHARED / "video" / "vtest.avi") -> list[np.ndarray]:
    """The first ``n`` frames of a video (decoded once, then reused)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < n:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    if not frames:
        raise RuntimeError(f"no frames decoded from {path}")
    return frames


def _pct(ms: np.ndarray, q: float) -> float:
    return round(float(np.percentile(np.sort(ms), q)), 3)


def soak(detector, frames: list[np.ndarray], n: int, *, warmup: int = 50, window: int = 10_000,
         sample_every: int = 100) -> dict:
    """Run ``n`` timed frames after ``warmup`` untimed ones; return the figures as a dict."""
    for i in range(warmup):
        detector.detect(frames[i % len(frames)])
    rss0, fds0 = rss_mb(), open_fds()
    lat = np.empty(n, np.float64)
    rss_peak, boxes = rss0, 0
    for i in range(n):
        t0 = time.perf_counter()
        det = detector.detect(frames[i % len(frames)])
        lat[i] = (time.perf_counter() - t0) * 1e3
        boxes += len(det.xyxy)
        if i % sample_every == 0:
            rss_peak = max(rss_peak, rss_mb())
    rss1, fds1 = rss_mb(), open_fds()
    w = max(1, min(window, n // 5))
    return {"frames": n, "warmup": warmup, "boxes": boxes, "rss_start_mb": round(rss0, 1),
            "rss_end_mb": round(rss1, 1), "rss_peak_mb": round(max(rss_peak, rss1), 1),
            "rss_growth_mb": round(rss1 - rss0, 1), "fds_start": fds0, "fds_end": fds1, "window": w,
            "first_p50_ms": _pct(lat[:w], 50), "first_p99_ms": _pct(lat[:w], 99),
            "last_p50_ms": _pct(lat[-w:], 50), "last_p99_ms": _pct(lat[-w:], 99)}


def main(argv: list[str] | None = None) -> int:
    from edgerun.runtime import Detector

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(SHARED / "models" / "yolov8n_320_int8dyn.onnx"))
    ap.add_argument("--frames", type=int, default=20_000)
    ap.add_argument("--window", type=int, default=10_000)
    args = ap.parse_args(argv)
    det = Detector.from_path(args.model)
    report = soak(det, video_frames(), args.frames, window=args.window)
    report.update(model=os.path.basename(args.model), python=sys.version.split()[0],
                  machine=platform.machine(), cpus=len(os.sched_getaffinity(0)))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
