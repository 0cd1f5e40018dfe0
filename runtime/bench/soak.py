"""Soaks: many frames through ``Detector.detect`` or ``StreamRunner``; RSS growth, open file
descriptors and latency drift. Run long by ``benchmarks/soak.py`` and ``benchmarks/soak_stream.py``,
short by ``tests/reliability/test_soak.py``.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np

from ..sources import VideoReader
from . import machine_record, open_fds, rss_mb

__all__ = ["first_frames", "soak", "demo_frames", "stream_soak"]


def first_frames(path: str, n: int = 48) -> list[np.ndarray]:
    """The first ``n`` frames of a video (decoded once, then reused)."""
    frames = []
    with VideoReader(str(path)) as reader:
        while len(frames) < n and (img := reader.read()) is not None:
            frames.append(img)
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


# -- the stream runner --------------------------------------------------------------------------
def demo_frames(fmt: str = "bgr", n: int = 16) -> list[np.ndarray]:
    """``n`` 640x480 demo scenes, BGR or I420 camera buffers."""
    import cv2

    from ..demo import make_scene

    out = []
    for seed in range(n):
        img = make_scene(seed, size=(480, 640))[0]
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420) if fmt == "i420" else img)
    return out


def _pcts(a: np.ndarray) -> dict:
    return {"p50": round(float(np.percentile(a, 50)), 2), "p99": round(float(np.percentile(a, 99)), 2)}


def stream_soak(model: str, frames: int, warmup: int, fmt: str = "bgr") -> dict:
    """Push ``frames`` synthetic demo scenes through ``StreamRunner`` (every_frame, ``submit``);
    return the report (per-1k-frame windows included)."""
    from ..streaming.runner import StreamRunner

    images = demo_frames(fmt)
    ages = np.zeros(frames, np.float64)
    proc = np.zeros(frames, np.float64)
    done = threading.Event()
    count = [0]

    def on_result(r) -> None:
        ages[r.index] = r.age * 1e3
        t = r.detections.timings if r.detections is not None else {}
        proc[r.index] = sum(t.values())
        count[0] += 1
        if count[0] == frames:
            done.set()

    run_ = StreamRunner(model, mode="every_frame", on_result=on_result).start()
    samples, fds0, rss0, t0 = [], None, None, time.perf_counter()
    for i in range(frames):
        run_.submit(images[i % len(images)], pixel_format=fmt, timeout=60)
        if i == warmup:
            rss0, fds0 = rss_mb(), open_fds()
        if i >= warmup and i % 1000 == 0:
            samples.append((i, rss_mb(), open_fds()))
    done.wait(120)
    run_.stop(drain=True)
    wall = time.perf_counter() - t0
    samples.append((frames, rss_mb(), open_fds()))
    xs, ys, fds = (np.array(v, float) for v in zip(*samples))
    slope = float(np.polyfit(xs / 1000, ys, 1)[0]) if len(xs) > 1 else 0.0
    w = min(10_000, max(1, (frames - warmup) // 5))
    first = slice(warmup, warmup + w)
    last = slice(frames - w, frames)
    windows = [{"end": e, "age": _pcts(ages[e - 1000:e]), "proc": _pcts(proc[e - 1000:e])}
               for e in range(warmup + 1000, frames + 1, 1000)]
    p99 = {k: (float(np.percentile(a[first], 99)), float(np.percentile(a[last], 99)))
           for k, a in (("age", ages), ("proc", proc))}
    growth = float(ys[-1] - rss0)
    return {"frames": frames, "results": count[0], "warmup": warmup, "window": w, "format": fmt,
            "model": os.path.basename(model), "wall_s": round(wall, 1), "fps": round(frames / wall, 1),
            "rss_after_warmup_mb": round(rss0, 1), "rss_end_mb": round(float(ys[-1]), 1),
            "rss_max_mb": round(float(ys.max()), 1), "rss_growth_mb": round(growth, 1),
            "rss_slope_mb_per_1k": round(slope, 4), "fds_after_warmup": fds0,
            "fds_min": int(fds.min()), "fds_max": int(fds.max()),
            "frame_buffers": run_.stats()["frame_buffers"],
            "age_ms_first": _pcts(ages[first]), "age_ms_last": _pcts(ages[last]),
            "proc_ms_first": _pcts(proc[first]), "proc_ms_last": _pcts(proc[last]),
            "p99_ratio_last_first": {k: round(b / a, 3) for k, (a, b) in p99.items()},
            "verdict": {"rss_growth_le_16mb": growth <= 16, "fds_flat": int(fds.min()) == int(fds.max()),
                        "age_p99_within_10pct": p99["age"][1] <= 1.1 * p99["age"][0],
                        "proc_p99_within_10pct": p99["proc"][1] <= 1.1 * p99["proc"][0]},
            "rss_samples": [[int(x), round(float(y), 2)] for x, y in zip(xs, ys)],
            "windows_1k": windows, "machine": machine_record()}
