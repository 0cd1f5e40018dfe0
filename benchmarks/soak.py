"""Soak: N frames through Detector.detect; RSS growth, open file descriptors and latency drift.

    python benchmarks/soak.py --frames 100000 [--model ../shared/models/yolov8n_320_int8dyn.onnx]

Reports RSS and fd count after warm-up and at the end (and the peak), latency p50/p99 of the
first and last windows (10,000 frames, or a fifth of the run if shorter). Frames cycle through
the first frames of ../shared/video/vtest.avi. tests/reliability/test_soak.py runs a short version;
the measuring code is ``edgerun.runtime.bench.soak``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from edgerun.runtime.bench.soak import first_frames, soak

ROOT = Path(__file__).resolve().parents[1]
from _shared import SHARED  # noqa: E402 - $EDGERUN_SHARED or ../shared


def main(argv: list[str] | None = None) -> int:
    from edgerun.runtime import Detector

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(SHARED / "models" / "yolov8n_320_int8dyn.onnx"))
    ap.add_argument("--frames", type=int, default=20_000)
    ap.add_argument("--window", type=int, default=10_000)
    args = ap.parse_args(argv)
    det = Detector.from_path(args.model)
    report = soak(det, first_frames(str(SHARED / "video" / "vtest.avi")), args.frames, window=args.window)
    report.update(model=os.path.basename(args.model), python=sys.version.split()[0],
                  machine=platform.machine(), cpus=len(os.sched_getaffinity(0)))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
