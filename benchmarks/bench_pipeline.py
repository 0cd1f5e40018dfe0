"""Pipeline benchmarks: every detector in ../shared/models (and the bundled demo model) on bus.jpg,
edgerun interleaved with the plain numpy+OpenCV baseline in the same run, through the same
measuring code as ``edgerun benchmark`` (``edgerun.runtime.cli.benchmark.run``).

    python benchmarks/bench_pipeline.py [--iterations 30] [--threads 0] [--check] [--json FILE]

``--check`` (for CI): exit 1 when edgerun's end-to-end median exceeds ``--bound`` (default 1.5) x the
baseline's, measured interleaved in the same run. Relative bounds only, never absolute ms.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
from _shared import SHARED  # noqa: E402 - $EDGERUN_SHARED or ../shared
DEMO = ROOT / "runtime" / "data" / "demo.onnx"


def candidate_models() -> list[Path]:
    """Every ONNX file in ../shared/models, then the bundled demo model, those present."""
    models = sorted((SHARED / "models").glob("*.onnx")) if (SHARED / "models").is_dir() else []
    return models + ([DEMO] if DEMO.exists() else [])


def supported(model: Path) -> str | None:
    """None when edgerun's Detector opens ``model``, else the reason it does not."""
    from edgerun.kernels.errors import EdgerunError
    from edgerun.runtime import Detector

    try:
        Detector.from_path(str(model), threads=1).close()
    except EdgerunError as exc:
        return str(exc).splitlines()[0][:160]
    return None


def run(*, iterations: int = 30, warmup: int = 5, threads: int = 0, compare: bool = True) -> dict[str, Any]:
    """Measure every supported model; returns {"results": [benchmark results], "skipped": [...]}."""
    from edgerun.runtime.cli.benchmark import BenchConfig
    from edgerun.runtime.cli.benchmark import run as bench_run
    from edgerun.runtime.bench.peers import PeerUnavailable

    image = SHARED / "images" / "bus.jpg"
    out: dict[str, Any] = {"name": "pipeline", "results": [], "skipped": []}
    for model in candidate_models():
        why = supported(model)
        if why:
            out["skipped"].append({"model": model.name, "reason": why})
            continue
        source = str(image) if image.exists() and model != DEMO else None  # demo: its own scene
        cfg = BenchConfig(model=str(model), source=source, iterations=iterations, warmup=warmup,
                          threads=(threads,), compare=("baseline",) if compare else ())
        try:
            res = bench_run(cfg)
        except PeerUnavailable as exc:
            out["skipped"].append({"model": model.name, "reason": f"baseline: {exc}"})
            res = bench_run(BenchConfig(**{**cfg.__dict__, "compare": ()}))
        out["results"].append(res)
        if res["interrupted"]:
            break
    return out


def check(res: dict[str, Any], bound: float = 1.5) -> list[str]:
    """Regressions: edgerun end-to-end median > ``bound`` x baseline's in the same run."""
    bad = []
    for r in res["results"]:
        for ratio in r["ratios"]:
            e2e = ratio["stages"].get("end_to_end")
            if e2e is not None and e2e * bound < 1.0:
                bad.append(f"{ratio['edgerun']} ({r['cases'][0]['model']}): baseline/edgerun end-to-end "
                           f"{e2e:.2f} < 1/{bound}")
    return bad


def markdown(res: dict[str, Any]) -> str:
    """One table of all cases and one of the per-stage ratios."""
    from edgerun.runtime.bench.report import markdown_table

    cases = [dict(c, name=f"{c['model']} {c['name']}") for r in res["results"] for c in r["cases"]]
    lines = ["Median (p90) ms per stage; CPU = process CPU time / wall (200% = both cores).", "",
             markdown_table(cases), "", "Ratios baseline / edgerun (median; > 1 means edgerun is faster):", "",
             "| model | decode | preprocess | inference | postprocess | end_to_end |", "|---|---|---|---|---|---|"]
    for r in res["results"]:
        for ratio in r["ratios"]:
            st = ratio["stages"]
            lines.append(f"| {r['cases'][0]['model']} | " + " | ".join(
                f"{st[k]:.2f}" if k in st else "-"
                for k in ("decode", "preprocess", "inference", "postprocess", "end_to_end")) + " |")
    lines += [""] + [f"- skipped {s['model']}: {s['reason']}" for s in res["skipped"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="0 = edgerun's CPU budget")
    ap.add_argument("--no-compare", action="store_true", help="edgerun only, no baseline")
    ap.add_argument("--check", action="store_true", help="exit 1 on a relative regression")
    ap.add_argument("--bound", type=float, default=1.5)
    ap.add_argument("--json", help="write the full result here")
    a = ap.parse_args(argv)
    res = run(iterations=a.iterations, warmup=a.warmup, threads=a.threads, compare=not a.no_compare)
    print(markdown(res))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1, default=str))
    if a.check:
        bad = check(res, a.bound)
        for b in bad:
            print(f"REGRESSION: {b}", file=sys.stderr)
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
