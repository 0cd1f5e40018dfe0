"""``edgerun batch`` on Ray vs a plain single-process loop over coco128, both including decode.

    python benchmarks/bench_batch.py [--model ../shared/models/yolov8n_640_fp32dq.onnx]
                                     [--workers 2] [--rounds 3] [--repeat 1] [--cli] [--json FILE]

Interleaved rounds on one machine (noisy when shared: read the per-round ratios):
- ``loop``: ``Detector.from_path(model)`` (threads = every CPU), then ``read_image`` + ``detect``
  per file; model load excluded.
- ``ray``: ``run_batch(..., workers=N)`` on a Ray instance started once by this script; the time
  counts from dataset start, so it includes actor start-up and model load in every actor.
- ``--cli``: also time ``edgerun batch`` as a user runs it (local Ray start and shutdown included).
- ``--repeat K``: an archive of K x 128 files (symlinks), to amortise the fixed start-up cost.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from _shared import SHARED  # noqa: E402 - $EDGERUN_SHARED or ../shared
COCO = SHARED / "datasets" / "coco128" / "images" / "train2017"


def archive(tmp: str, repeat: int) -> str:
    """coco128, or a folder of ``repeat`` x 128 symlinks to it."""
    if repeat <= 1:
        return str(COCO)
    folder = os.path.join(tmp, "images")
    os.makedirs(folder)
    for k in range(repeat):
        for f in sorted(os.listdir(COCO)):
            os.symlink(COCO / f, os.path.join(folder, f"{k}_{f}"))
    return folder


def loop_fps(model: str, files: list[str]) -> float:
    """Images per second of a plain decode + detect loop in this process."""
    from edgerun.runtime import Detector
    from edgerun.runtime.sources import read_image

    det = Detector.from_path(model)
    det.detect(read_image(files[0]))  # warm-up, excluded
    t0 = time.perf_counter()
    for f in files:
        det.detect(read_image(f))
    return len(files) / (time.perf_counter() - t0)


def ray_fps(model: str, source: str, workers: int, out: str) -> float:
    """Rows per second of run_batch on the already running Ray instance."""
    from edgerun.runtime.batch.run import run_batch

    summary = run_batch(model, [source], out, workers=workers, progress=False)
    return summary.rows_per_second


def cli_seconds(model: str, source: str, workers: int, out: str) -> float:
    """Wall seconds of ``edgerun batch`` as a user runs it (Ray start and shutdown included)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgerun.runtime.cli", "batch", model, source, "-o", out,
                    "--workers", str(workers)], check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(SHARED / "models" / "yolov8n_640_fp32dq.onnx"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeat", type=int, default=1, help="archive of K x 128 files (symlinks)")
    p.add_argument("--cli", action="store_true", help="also time the CLI end to end")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    if not COCO.is_dir():
        print(f"skipped: {COCO} is absent", file=sys.stderr)
        return 0
    import ray

    tmp = tempfile.mkdtemp(prefix="bench_batch_")
    source = archive(tmp, args.repeat)
    files = sorted(os.path.join(source, f) for f in os.listdir(source))
    out = os.path.join(tmp, "out.jsonl")
    rounds = []
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR")
    try:
        for r in range(args.rounds):
            loop, par = loop_fps(args.model, files), ray_fps(args.model, source, args.workers, out)
            rounds.append({"loop_fps": loop, "ray_fps": par, "ratio": par / loop})
            print(f"round {r}: loop {loop:.2f} img/s, ray x{args.workers} {par:.2f} img/s, "
                  f"ratio {par / loop:.2f}", flush=True)
    finally:
        ray.shutdown()
    result = {"model": os.path.basename(args.model), "workers": args.workers, "images": len(files), "repeat": args.repeat,
              "cpus": os.cpu_count(), "rounds": rounds,
              "median_ratio": statistics.median(x["ratio"] for x in rounds)}
    if args.cli:
        wall = cli_seconds(args.model, source, args.workers, out)
        loop = loop_fps(args.model, files)
        result["cli"] = {"wall_s": wall, "fps": len(files) / wall, "loop_fps": loop,
                         "ratio": len(files) / wall / loop}
        print(f"cli end to end: {wall:.1f} s = {len(files) / wall:.2f} img/s vs loop {loop:.2f} "
              f"img/s (ratio {len(files) / wall / loop:.2f})")
    print(f"median ratio ray/loop: {result['median_ratio']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
