"""Run the whole benchmark suite and regenerate benchmarks/RESULTS.md (one command).

    python benchmarks/run_all.py [--quick] [--check] [--skip spin,cold,...]

Sections: machine record; pipelines (bench_pipeline, edgerun vs baseline interleaved); ORT
spin-waiting (bench_spin); cold start (fresh processes, cache hit and miss); then the kernel owners'
bench_preprocess.py / bench_postprocess.py when present (their own ``run()`` if they expose one,
else their stdout). Raw JSON goes to benchmarks/out/ (git-ignored); plots to benchmarks/plots/
when matplotlib is installed. ``--check`` exits 1 on a relative pipeline regression (CI).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_pipeline  # noqa: E402
import bench_spin  # noqa: E402

OUT, PLOTS = HERE / "out", HERE / "plots"
COLD_MODELS = ("yolov8n_320_int8dyn.onnx", "yolov8n_640_fp32dq.onnx")
OWNER_SCRIPTS = ("bench_preprocess.py", "bench_postprocess.py")


def section_pipeline(quick: bool) -> tuple[str, Any]:
    res = bench_pipeline.run(iterations=10 if quick else 30, warmup=3 if quick else 5)
    _plot_cases(res, "pipeline")
    return bench_pipeline.markdown(res), res


def section_spin(quick: bool) -> tuple[str, Any]:
    res = bench_spin.run(n=5 if quick else 10, repeats=2 if quick else 6)
    return bench_spin.markdown(res), res


def section_cold(quick: bool) -> tuple[str, Any]:
    from edgerun.runtime.bench.cold import cold_start

    image = bench_pipeline.SHARED / "images" / "bus.jpg"
    out, lines = [], ["| model | runs | first result ms (median) | min | max | interpreter | imports | "
                      "session | first detect | kernel load | peak RSS MB | miss: first result | "
                      "miss: kernel compile |", "|" + "---|" * 13]
    for name in COLD_MODELS:
        model = bench_pipeline.SHARED / "models" / name
        if not model.exists() or not image.exists():
            lines.append(f"| {name} | skipped: absent |" + " |" * 11)
            continue
        c = cold_start(str(model), str(image), runs=2 if quick else 5, miss=not quick, threads=0)
        out.append(c)
        h = {k: v["median"] for k, v in c["hit"].items()}
        t = c["hit"]["time_to_first_result_ms"]
        m = c["miss"] or {}
        first = h["first_preprocess_ms"] + h["first_inference_ms"] + h["first_postprocess_ms"]
        lines.append(f"| {name} | {t['count']} | {t['median']:.0f} | {t['min']:.0f} | {t['max']:.0f} | "
                     f"{h['interpreter_ms']:.0f} | {h['import_numpy_cv2_ms'] + h['import_edgerun_ms']:.0f} | "
                     f"{h['session_ms']:.0f} | {first:.0f} | {h['kernel_first_call_ms']:.0f} | "
                     f"{h['peak_rss_mb']:.0f} | {m.get('time_to_first_result_ms', float('nan')):.0f} | "
                     f"{m.get('kernel_first_call_ms', float('nan')):.0f} |")
    return "\n".join(lines), out


def section_owner(script: str) -> Callable[[bool], tuple[str, Any]]:
    """A kernel owner's benchmark: its ``run()`` (+ ``markdown()``) if exposed, else its stdout."""
    def section(quick: bool) -> tuple[str, Any]:
        path = HERE / script
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        if callable(getattr(mod, "run", None)):
            res = mod.run()
            md = mod.markdown(res) if callable(getattr(mod, "markdown", None)) else \
                "```\n" + json.dumps(res, indent=1, default=str)[:20000] + "\n```"
            return md, res
        proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=1800)
        text = proc.stdout.strip() + (f"\n(exit {proc.returncode}: {proc.stderr.strip()[-500:]})"
                                      if proc.returncode else "")
        return "```\n" + text + "\n```", {"stdout": proc.stdout, "returncode": proc.returncode}
    return section


def _plot_cases(res: dict[str, Any], stem: str) -> None:
    from edgerun.runtime.bench.report import plot, plot_available

    if not plot_available():
        return
    PLOTS.mkdir(exist_ok=True)
    for r in res["results"]:
        plot(r, str(PLOTS / f"{stem}_{Path(r['cases'][0]['model']).stem}.png"))


def machine_md() -> str:
    from edgerun.runtime.bench import machine_record

    m = machine_record()
    rows = [("CPU", m["cpu_model"]), ("CPUs usable/logical", f"{m['usable_cpus']}/{m['logical_cpus']}"),
            ("governor", m["governor"] or "unreadable"), ("load average at start", m["load_avg"]),
            ("OS", m["os"]), ("Python", m["python"]),
            ("versions", ", ".join(f"{k} {v}" for k, v in m["versions"].items())),
            ("Numba threads / layer", f"{m['threads']['numba_threads']} / {m['threads']['numba_threading_layer']}"),
            ("thread env", m["threads"]["env"])]
    return "\n".join(["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
                     + [""] + [f"- WARNING: {w}" for w in m["warnings"]])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few iterations (smoke run)")
    ap.add_argument("--check", action="store_true", help="exit 1 on a relative pipeline regression")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: pipeline,spin,cold,owners")
    ap.add_argument("--output", default=str(HERE / "RESULTS.md"))
    a = ap.parse_args(argv)
    skip = set(filter(None, a.skip.split(",")))
    sections: list[tuple[str, str, Callable]] = [
        ("pipeline", "Pipelines on bus.jpg: edgerun vs plain numpy+OpenCV, interleaved", section_pipeline),
        ("spin", "ORT spin-waiting: bare Session.run vs Detector.detect (2 threads)", section_spin),
        ("cold", "Cold start: new process -> first detection on bus.jpg", section_cold)]
    sections += [("owners", f"Kernel benchmark: {s}", section_owner(s)) for s in OWNER_SCRIPTS
                 if (HERE / s).exists()]
    OUT.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    doc = ["# edgerun benchmark results", "",
           f"Generated by `python benchmarks/run_all.py{' --quick' if a.quick else ''}` on "
           f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Timings on a shared machine are noisy: "
           "compare the ratios measured side by side in one run, not absolute milliseconds.", "",
           "## Machine", "", machine_md()]
    raw: dict[str, Any] = {}
    failed = []
    for key, title, fn in sections:
        if key in skip:
            continue
        print(f"run_all: {title} ...", file=sys.stderr, flush=True)
        try:
            md, res = fn(a.quick)
        except Exception as exc:  # noqa: BLE001 - one broken section must not lose the others
            md, res = f"FAILED: {type(exc).__name__}: {exc}", None
            failed.append(title)
        raw[title] = res
        doc += ["", f"## {title}", "", md]
    doc += ["", f"_Suite time {time.perf_counter() - t0:.0f} s._", ""]
    Path(a.output).write_text("\n".join(doc))
    (OUT / "results.json").write_text(json.dumps(raw, indent=1, default=str))
    print(f"run_all: wrote {a.output} and {OUT / 'results.json'}", file=sys.stderr)
    if a.check and "pipeline" not in skip:
        pipe = raw[sections[0][1]]
        bad = bench_pipeline.check(pipe) if pipe else ["pipeline section failed"]
        for b in bad:
            print(f"REGRESSION: {b}", file=sys.stderr)
        return 1 if bad or failed else 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
