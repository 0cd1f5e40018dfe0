"""ORT spin-waiting (``session.intra_op.allow_spinning``): bare ``Session.run`` vs ``Detector.detect``.

For each model, four blocks, each with its own fresh session (never interleaved: a spinning
session slows whatever runs right after it), separated by a pause:
  bare run, spin on | bare run, spin off | detect(), spin on | detect(), spin off
``bare`` = ``Session.run`` on an already-prepared tensor; ``detect`` = the whole pipeline on bus.jpg.
The block sequence runs ``repeats`` times (default 6 x 10 calls = 60 samples per configuration),
reversed every other time, so drift from other load on the machine falls on every configuration.
Reported: median per block (pooled over repeats, and per repeat), CPU utilisation, and
detect() median / min(bare spin on, bare spin off) for each spin setting (issue target <= 1.03).

    python benchmarks/bench_spin.py [--iterations 10] [--repeats 6] [--threads 2] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
from _shared import SHARED  # noqa: E402 - $EDGERUN_SHARED or ../shared
MODELS = ("yolov8n_640_fp32dq.onnx", "yolov8n_320_int8dyn.onnx")
BLOCKS = (("bare", True), ("bare", False), ("detect", True), ("detect", False))


def _block(model: str, kind: str, spin: bool, image, threads: int, n: int, warmup: int) -> dict[str, Any]:
    """One block with a fresh Detector/Session: ``n`` timed calls after ``warmup`` untimed ones."""
    from edgerun.runtime import Detector
    from edgerun.runtime.bench import summarize, time_calls

    det = Detector.from_path(model, threads=threads, spin=spin)
    if kind == "bare":
        tensor, _ = det.preprocess(image)
        feed = {det.spec.input_name: tensor.copy()}
        fn = lambda: det.session.run(feed)  # noqa: E731
    else:
        fn = lambda: det.detect(image)  # noqa: E731
    samples, wall, cpu = time_calls(fn, n, warmup)
    det.close()
    return {"kind": kind, "spin": spin, "samples_ms": samples, "stats": summarize(samples),
            "cpu_util": round(cpu / wall, 3)}


def measure_model(model: str, image, *, threads: int = 2, n: int = 10, warmup: int = 3,
                  repeats: int = 6, pause: float = 0.5) -> dict[str, Any]:
    """All blocks for one model; returns pooled medians and the detect/bare ratios."""
    from edgerun.runtime.bench import summarize

    runs: list[dict[str, Any]] = []
    for r in range(repeats):
        order = BLOCKS if r % 2 == 0 else BLOCKS[::-1]
        for kind, spin in order:
            runs.append({"repeat": r, **_block(model, kind, spin, image, threads, n, warmup)})
            time.sleep(pause)  # let spinning threads park before the next block
    pooled = {}
    for kind, spin in BLOCKS:
        key = f"{kind}_spin_{'on' if spin else 'off'}"
        mine = [b for b in runs if b["kind"] == kind and b["spin"] == spin]
        pooled[key] = {"stats": summarize([s for b in mine for s in b["samples_ms"]]),
                       "per_repeat_median": [round(b["stats"]["median"], 3) for b in mine],
                       "cpu_util": [b["cpu_util"] for b in mine]}
    ratios = {}
    for stat in ("median", "min"):  # min: the least-disturbed call, a check on the median under load
        v = {k: b["stats"][stat] for k, b in pooled.items()}
        best_bare = min(v["bare_spin_on"], v["bare_spin_off"])
        ratios[f"{stat}: detect_spin_on / best_bare"] = v["detect_spin_on"] / best_bare
        ratios[f"{stat}: detect_spin_off / best_bare"] = v["detect_spin_off"] / best_bare
        ratios[f"{stat}: bare_spin_on / bare_spin_off"] = v["bare_spin_on"] / v["bare_spin_off"]
    return {"model": Path(model).name, "threads": threads, "iterations": n, "repeats": repeats,
            "blocks": pooled, "ratios": {k: round(v, 4) for k, v in ratios.items()},
            "raw": [{k: v for k, v in b.items() if k != "samples_ms"} for b in runs]}


def run(*, threads: int = 2, n: int = 10, warmup: int = 3, repeats: int = 6) -> dict[str, Any]:
    """The suite entry used by run_all.py: every available model in MODELS."""
    import cv2

    from edgerun.runtime.bench import machine_record

    image_path = SHARED / "images" / "bus.jpg"
    out: dict[str, Any] = {"name": "spin", "results": [], "skipped": []}
    if not image_path.exists():
        out["skipped"].append(f"{image_path} absent")
        return out
    image = cv2.imread(str(image_path))
    for name in MODELS:
        path = SHARED / "models" / name
        if not path.exists():
            out["skipped"].append(f"{path} absent")
            continue
        out["results"].append(measure_model(str(path), image, threads=threads, n=n, warmup=warmup,
                                            repeats=repeats))
    out["machine"] = machine_record([threads])
    return out


def markdown(res: dict[str, Any]) -> str:
    """Tables for RESULTS.md."""
    lines = ["| model | block | median ms | min ms | p90 ms | per-repeat medians | CPU util |",
             "|---|---|---|---|---|---|---|"]
    for r in res["results"]:
        for key, b in r["blocks"].items():
            s = b["stats"]
            lines.append(f"| {r['model']} | {key} | {s['median']:.2f} | {s['min']:.2f} | {s['p90']:.2f} | "
                         f"{b['per_repeat_median']} | {b['cpu_util']} |")
    lines += ["", "| model | " + " | ".join(next(iter(res["results"]), {"ratios": {}})["ratios"]) + " |",
              "|---|" + "---|" * len(next(iter(res["results"]), {"ratios": {}})["ratios"])]
    for r in res["results"]:
        lines.append(f"| {r['model']} | " + " | ".join(f"{v:.3f}" for v in r["ratios"].values()) + " |")
    lines += [f"- skipped: {s}" for s in res["skipped"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=10, help="per block; pooled over repeats")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the full result here")
    a = ap.parse_args(argv)
    if a.iterations * a.repeats < 30:
        print("bench_spin: fewer than 30 samples per configuration give unstable medians", file=sys.stderr)
    res = run(threads=a.threads, n=a.iterations, warmup=a.warmup, repeats=a.repeats)
    print(markdown(res))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
