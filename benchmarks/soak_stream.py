"""Soak of the stream runner: N frames pushed through ``StreamRunner`` in ``every_frame`` mode.

    python benchmarks/soak_stream.py --frames 108000 --plot benchmarks/plots/soak_stream.png \
        --json benchmarks/out/soak_stream.json   # one hour of 30 fps video

Frames are synthetic demo scenes (cycled, so decode costs nothing) pushed with ``submit`` as raw
camera buffers into the bundled demo detector (or ``--model``). Reports RSS after warm-up and every
1,000 frames, the RSS slope (MB per 1k frames, least squares over the samples after warm-up), open
file descriptors, the pipeline's frame buffer count, and per 1,000-frame window the p50/p99 of the
frame age (submit -> result, includes queueing) and of the processing time (pre + inference +
post). The verdict compares p99 of the last 10k frames with the first 10k after warm-up (goal:
within 10%) and RSS growth (goal: <= 16 MB). ``--plot`` draws RSS and latency against frames.
"""
from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from edgerun.runtime.bench import machine_record, open_fds, rss_mb
from edgerun.runtime.demo import make_scene
from edgerun.runtime.streaming.runner import StreamRunner

ROOT = Path(__file__).resolve().parents[1]


def _frames(fmt: str, n: int = 16) -> list[np.ndarray]:
    out = []
    for seed in range(n):
        img = make_scene(seed, size=(480, 640))[0]
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420) if fmt == "i420" else img)
    return out


def _pcts(a: np.ndarray) -> dict:
    return {"p50": round(float(np.percentile(a, 50)), 2), "p99": round(float(np.percentile(a, 99)), 2)}


def run(model: str, frames: int, warmup: int, fmt: str) -> dict:
    """Push ``frames`` frames; return the report (windows included)."""
    images = _frames(fmt)
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


def plot(report: dict, path: str) -> None:
    """RSS and per-1k-window latency percentiles against frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    xs, ys = zip(*report["rss_samples"])
    a1.plot(xs, ys, color="tab:blue")
    a1.set_ylabel("RSS (MB)")
    a1.set_title(f"stream soak: {report['frames']:,} frames, {report['model']}, every_frame "
                 f"(RSS growth {report['rss_growth_mb']} MB)")
    ends = [w["end"] for w in report["windows_1k"]]
    for key, color in (("age", "tab:red"), ("proc", "tab:green")):
        a2.plot(ends, [w[key]["p99"] for w in report["windows_1k"]], color=color, label=f"{key} p99")
        a2.plot(ends, [w[key]["p50"] for w in report["windows_1k"]], color=color, ls="--",
                label=f"{key} p50")
    a2.set_ylabel("ms per 1k-frame window")
    a2.set_xlabel("frame")
    a2.legend(ncol=4, fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "runtime" / "data" / "demo.onnx"))
    ap.add_argument("--frames", type=int, default=12_000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--format", default="bgr", choices=("bgr", "i420"))
    ap.add_argument("--plot", metavar="PNG", help="draw RSS and latency against frames")
    ap.add_argument("--json", metavar="OUT", help="write the whole report (with windows) here")
    args = ap.parse_args()
    report = run(args.model, args.frames, args.warmup, args.format)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if args.plot:
        plot(report, args.plot)
    short = {k: v for k, v in report.items() if k not in ("windows_1k", "rss_samples", "machine")}
    print(json.dumps(short, indent=1))


if __name__ == "__main__":
    main()
