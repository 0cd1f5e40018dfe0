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
The measuring code is ``edgerun.runtime.bench.soak.stream_soak``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgerun.runtime.bench.soak import stream_soak

ROOT = Path(__file__).resolve().parents[1]


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
    report = stream_soak(args.model, args.frames, args.warmup, args.format)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if args.plot:
        plot(report, args.plot)
    short = {k: v for k, v in report.items() if k not in ("windows_1k", "rss_samples", "machine")}
    print(json.dumps(short, indent=1))


if __name__ == "__main__":
    main()
