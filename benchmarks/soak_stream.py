"""Soak of the stream runner: N frames pushed through ``StreamRunner`` in ``every_frame`` mode.

    python benchmarks/soak_stream.py --frames 12000 [--model runtime/data/demo.onnx] [--format nv12]

Frames are synthetic demo scenes (cycled, so decode costs nothing) pushed with ``submit`` as raw
camera buffers. Reports RSS after warm-up and every 1,000 frames, the RSS slope (MB per 1k
frames, least squares over the samples after warm-up), open file descriptors, the pipeline's frame
buffer count, and frame-age p50/p99 of the first and last windows.
"""
from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path

import cv2
import numpy as np

from edgerun.runtime.bench import open_fds, rss_mb
from edgerun.runtime.demo import make_scene
from edgerun.runtime.stream import StreamRunner

ROOT = Path(__file__).resolve().parents[1]


def _frames(fmt: str, n: int = 16) -> list[np.ndarray]:
    out = []
    for seed in range(n):
        img = make_scene(seed, size=(480, 640))[0]
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420) if fmt == "i420" else img)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "runtime" / "data" / "demo.onnx"))
    ap.add_argument("--frames", type=int, default=12_000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--format", default="bgr", choices=("bgr", "i420"))
    args = ap.parse_args()
    frames = _frames(args.format)
    ages: list[float] = []
    done = threading.Event()
    count = [0]

    def on_result(r) -> None:
        ages.append(r.age * 1e3)
        count[0] += 1
        if count[0] == args.frames:
            done.set()

    run = StreamRunner(args.model, mode="every_frame", on_result=on_result).start()
    samples, fds0, rss0 = [], None, None
    for i in range(args.frames):
        run.submit(frames[i % len(frames)], pixel_format=args.format, timeout=60)
        if i == args.warmup:
            rss0, fds0 = rss_mb(), open_fds()
        if i >= args.warmup and i % 1000 == 0:
            samples.append((i, rss_mb()))
    done.wait(120)
    run.stop(drain=True)
    samples.append((args.frames, rss_mb()))
    xs, ys = np.array(samples, float).T
    slope = float(np.polyfit(xs / 1000, ys, 1)[0]) if len(xs) > 1 else 0.0
    w = min(10_000, max(1, len(ages) // 5))
    first, last = np.array(ages[args.warmup:args.warmup + w]), np.array(ages[-w:])
    report = {"frames": args.frames, "results": len(ages), "rss_after_warmup_mb": round(rss0, 1),
              "rss_end_mb": round(ys[-1], 1), "rss_growth_mb": round(ys[-1] - rss0, 1),
              "rss_slope_mb_per_1k": round(slope, 3), "fds_after_warmup": fds0,
              "fds_end": open_fds(), "frame_buffers": run.stats()["frame_buffers"],
              "age_ms_first": {"p50": round(float(np.percentile(first, 50)), 2),
                               "p99": round(float(np.percentile(first, 99)), 2)},
              "age_ms_last": {"p50": round(float(np.percentile(last, 50)), 2),
                              "p99": round(float(np.percentile(last, 99)), 2)}}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
