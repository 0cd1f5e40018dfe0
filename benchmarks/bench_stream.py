"""Streaming throughput: the pipelined runner vs a bare ``session.run`` and a sequential loop.

    python benchmarks/bench_stream.py [--frames 120] [--rounds 3] [--models 320 640] [--json FILE]

Cases, interleaved round by round in one process (the machine is shared: compare ratios, not ms):
- ``bare``: ``Session(threads=budget).run`` on one prepared tensor (no decode/pre/post at all);
- ``sequential``: ``cap.read()`` -> ``detector.detect()`` one frame at a time, all threads;
- ``stream WxT``: ``edgerun.runtime.stream`` over the video, every frame, W sessions x T threads;
  ``auto`` is ``choose_split``'s pick.
Reported: frames/s per case (median over rounds), ratios to bare and to sequential per round
(median, min-max as the noise), and the machine record.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
from _shared import SHARED  # noqa: E402 - $EDGERUN_SHARED or ../shared
MODELS = {"320": "yolov8n_320_int8dyn.onnx", "640": "yolov8n_640_fp32dq.onnx"}


def bare_rate(session, tensor: np.ndarray, frames: int) -> float:
    """Frames/s of ``session.run`` on a prepared tensor."""
    name = session.inputs[0].name
    session.run({name: tensor})
    t0 = time.perf_counter()
    for _ in range(frames):
        session.run({name: tensor})
    return frames / (time.perf_counter() - t0)


def sequential_rate(detector, video: str, frames: int) -> float:
    """Frames/s of read -> detect, one frame at a time."""
    import cv2

    cap = cv2.VideoCapture(video)
    ok, img = cap.read()
    detector.detect(img)
    t0 = time.perf_counter()
    n = 0
    while n < frames:
        ok, img = cap.read()
        if not ok:
            break
        detector.detect(img)
        n += 1
    cap.release()
    return n / (time.perf_counter() - t0)


def stream_rate(detector, video: str, frames: int, workers: int | None, threads: int | None) -> float:
    """Frames/s of the pipelined runner (every frame, in order; checked)."""
    from edgerun.runtime.streaming.runner import StreamRunner

    runner = StreamRunner(detector, mode="every_frame", workers=workers, threads=threads,
                          max_frames=frames + 2).start(video)
    it = runner.results()
    for _ in range(2):  # warm-up: first frames compile/load kernels and fill the pipeline
        next(it)
    t0 = time.perf_counter()
    n, last = 0, 1
    for r in it:
        assert r.index == last + 1 and r.ok, (r.index, last, r.error)
        last, n = r.index, n + 1
    return n / (time.perf_counter() - t0)


def split_probe(det, tensor: np.ndarray, budget: int, rounds: int, seconds: float = 1.0) -> dict:
    """Inference only, 1 x budget threads vs budget x 1 thread, alternated in ``seconds`` slices
    (short slices keep the comparison fair on a machine whose load drifts)."""
    from edgerun.runtime import Session
    from edgerun.runtime.streaming.split import runs_per_second

    feed = {det.spec.input_name: tensor}
    one = [Session(det.session.path, threads=budget)]
    many = [Session(det.session.path, threads=1) for _ in range(budget)]
    ratios, a, b = [], [], []
    for _ in range(rounds):
        a.append(runs_per_second(one, feed, seconds))
        b.append(runs_per_second(many, feed, seconds))
        ratios.append(b[-1] / a[-1])
    return {f"1x{budget} runs/s": round(statistics.median(a), 2), f"{budget}x1 runs/s": round(statistics.median(b), 2),
            "ratio median": round(statistics.median(ratios), 3), "ratio min": round(min(ratios), 3),
            "ratio max": round(max(ratios), 3)}


def bench_model(path: Path, video: str, frames: int, rounds: int, budget: int) -> dict:
    from edgerun.runtime import Detector, Session
    from edgerun.runtime.streaming.runner import choose_split

    det = Detector.from_path(str(path), threads=budget)
    tensor, _ = det.preprocess(np.full((576, 768, 3), 114, np.uint8))
    tensor = tensor.copy()
    bare_sess = Session(str(path), threads=budget)
    splits = {"1x%d" % budget: (1, budget), "%dx1" % budget: (budget, 1)}
    auto = choose_split(budget, "every_frame")
    cases: dict[str, list[float]] = {"bare": [], "sequential": []}
    cases.update({f"stream {k}": [] for k in splits})
    runs = {"bare": lambda: bare_rate(bare_sess, tensor, frames),
            "sequential": lambda: sequential_rate(det, video, frames)}
    runs.update({f"stream {k}": (lambda w=w, t=t: stream_rate(det, video, frames, w, t))
                 for k, (w, t) in splits.items()})
    names = list(runs)
    for r in range(rounds):  # rotate the order each round: no case always runs first
        for k in names[r % len(names):] + names[:r % len(names)]:
            cases[k].append(runs[k]())
    probe = split_probe(det, tensor, budget, rounds=2 * rounds)
    auto_key = f"stream {auto[0]}x{auto[1]}"
    out = {"model": path.name, "frames": frames, "rounds": rounds, "auto_split": auto_key,
           "fps": {k: round(statistics.median(v), 2) for k, v in cases.items()},
           "fps_samples": {k: [round(x, 2) for x in v] for k, v in cases.items()}, "ratios": {},
           "inference_only_split": probe}
    for k in cases:
        if k.startswith("stream"):
            for ref in ("bare", "sequential"):
                r = [a / b for a, b in zip(cases[k], cases[ref])]
                out["ratios"][f"{k} / {ref}"] = {"median": round(statistics.median(r), 3),
                                                 "min": round(min(r), 3), "max": round(max(r), 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--models", nargs="+", default=["320", "640"], choices=sorted(MODELS))
    p.add_argument("--json", help="write the report here")
    args = p.parse_args(argv)
    video = SHARED / "video" / "vtest.avi"
    if not video.exists():
        print(f"skipped: {video} is absent", file=sys.stderr)
        return 0
    from edgerun.runtime import cpu_budget
    from edgerun.runtime.bench import machine_record

    budget = cpu_budget()
    report = {"machine": machine_record([budget, 1]), "budget": budget, "results": []}
    for key in args.models:
        res = bench_model(SHARED / "models" / MODELS[key], str(video), args.frames, args.rounds, budget)
        report["results"].append(res)
        keys = ("model", "auto_split", "fps", "ratios", "inference_only_split")
        print(json.dumps({k: res[k] for k in keys}, indent=1), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
