"""Benchmark results out: the summary block, JSON, CSV, markdown tables and plots.

JSON schema ``edgerun.benchmark/1`` (all times in milliseconds)::

    {"schema": "edgerun.benchmark/1", "created": ISO-8601 UTC, "command": [argv...],
     "machine": {cpu_model, logical_cpus, usable_cpus, governor, load_avg, os, machine, python,
                 versions: {onnxruntime, numba, numpy, opencv},
                 threads: {ort_intra_op: [..], ort_inter_op, numba_threads, numba_threading_layer, env},
                 warnings: [str]},
     "cases": [{name, pipeline ("edgerun" | "baseline" | "ultralytics"), model, source, threads, spin,
                pixel_format, input_size: [h, w], batch, iterations, wall_s, fps, cpu_util
                (process CPU s / wall s; 2.0 = two cores busy), interrupted,
                warmup: {count, first_ms, samples_ms: [..], stats},
                stages: {decode?, preprocess, inference, postprocess, end_to_end: STATS}}],
     "ratios": [{peer, edgerun, stages: {stage: peer median / edgerun median}}],
     "cold_start": null | {prime, hit_runs, hit: {field: STATS}, miss: null | {field: value}},
     "soak": null | {frames, rss_mb: [[frame, MB], ..], slope_mb_per_1k_frames}}
    STATS = {count, min, mean, median, p90, p95, p99, max}

A stage sample is one iteration (one frame, or one batch of ``batch`` frames); ``fps`` counts frames.
``decode`` is present when frames are decoded from files each iteration (BGR from an encoded source).

CSV: one row per case and stage (plus a ``warmup`` row), columns ``CSV_COLUMNS``.
"""
from __future__ import annotations

import csv
import json
import math
from typing import Any, Sequence

from . import STAGES, STAT_KEYS

__all__ = ["SCHEMA", "CSV_COLUMNS", "summary_block", "write_json", "write_csv", "markdown_table",
           "ratios", "plot", "plot_available"]

SCHEMA = "edgerun.benchmark/1"
CSV_COLUMNS = ("case", "pipeline", "model", "threads", "spin", "pixel_format", "input_size", "batch",
               "stage", "count", "min_ms", "mean_ms", "median_ms", "p90_ms", "p95_ms", "p99_ms",
               "max_ms", "fps", "cpu_util", "interrupted")


def ratios(cases: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-stage median ratios peer / edgerun for cases measured together (same ``group``)."""
    out = []
    for peer in cases:
        if peer["pipeline"] == "edgerun":
            continue
        ref = next((c for c in cases if c["pipeline"] == "edgerun" and c.get("group") == peer.get("group")),
                   None)
        if ref is None:
            continue
        st = {}
        for stage in STAGES:
            a, b = peer["stages"].get(stage), ref["stages"].get(stage)
            if a and b and b["median"] > 0 and not math.isnan(a["median"]):
                st[stage] = round(a["median"] / b["median"], 3)
        out.append({"peer": peer["name"], "edgerun": ref["name"], "stages": st})
    return out


def _f(x: float | None, nd: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _case_title(c: dict[str, Any]) -> str:
    h, w = c["input_size"]
    return (f"{c['pipeline']}: {c['model']} threads={c['threads']} spin={c['spin']} "
            f"{c['pixel_format']} {h}x{w} batch={c['batch']}")


def summary_block(result: dict[str, Any]) -> str:
    """A trtexec/benchmark_app-style summary for stdout."""
    m = result["machine"]
    lines = ["=== edgerun benchmark ===",
             f"Machine: {m['cpu_model']}, {m['usable_cpus']}/{m['logical_cpus']} CPUs, governor "
             f"{m['governor'] or 'unreadable'}, load {m['load_avg']}, {m['os']}",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
             + f"; Python {m['python']}; Numba layer {m['threads']['numba_threading_layer']}"]
    lines += [f"WARNING: {w}" for w in m["warnings"]]
    for c in result["cases"]:
        wu = c["warmup"]
        lines += ["", f"[{c['name']}] {_case_title(c)}" + ("  (INTERRUPTED)" if c["interrupted"] else ""),
                  f"Warm-up: {wu['count']} iterations excluded (first {_f(wu['first_ms'], 1)} ms, "
                  f"median {_f(wu['stats']['median'], 1)} ms)",
                  f"Measured: {c['iterations']} iterations in {c['wall_s']:.2f} s | Throughput: "
                  f"{c['fps']:.2f} FPS | CPU utilisation: {100 * c['cpu_util']:.0f}% of one core",
                  f"{'stage (ms)':<12}" + "".join(f"{k:>9}" for k in STAT_KEYS)]
        for stage, s in c["stages"].items():
            lines.append(f"{stage:<12}{s['count']:>9}" + "".join(f"{_f(s[k]):>9}" for k in STAT_KEYS[1:]))
    for r in result.get("ratios", []):
        lines.append("")
        lines.append(f"Ratio {r['peer']} / {r['edgerun']} (median, >1 = edgerun faster): "
                     + ", ".join(f"{k} {v:.2f}x" for k, v in r["stages"].items()))
    if result.get("cold_start", {}) and "error" in result["cold_start"]:
        lines += ["", f"Cold start FAILED: {result['cold_start']['error']}"]
    elif result.get("cold_start"):
        from .cold import cold_summary
        lines += [""] + cold_summary(result["cold_start"])
    if result.get("soak"):
        s = result["soak"]
        lines += ["", f"Soak: {s['frames']} frames, RSS {s['rss_mb'][0][1]:.1f} -> {s['rss_mb'][-1][1]:.1f} MB, "
                      f"slope {s['slope_mb_per_1k_frames']:+.3f} MB per 1k frames"]
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: str) -> None:
    with open(path, "w") as f:
        json.dump(result, f, indent=1, default=str)


def csv_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for c in result["cases"]:
        base = {"case": c["name"], "pipeline": c["pipeline"], "model": c["model"], "threads": c["threads"],
                "spin": c["spin"], "pixel_format": c["pixel_format"],
                "input_size": "x".join(map(str, c["input_size"])), "batch": c["batch"], "fps": c["fps"],
                "cpu_util": c["cpu_util"], "interrupted": c["interrupted"]}
        stages = dict(c["stages"], warmup=c["warmup"]["stats"])
        for stage, s in stages.items():
            rows.append({**base, "stage": stage, "count": s["count"],
                         **{f"{k}_ms": round(s[k], 4) for k in STAT_KEYS[1:]}})
    return rows


def write_csv(result: dict[str, Any], path: str) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(csv_rows(result))


def markdown_table(cases: Sequence[dict[str, Any]], stages: Sequence[str] = STAGES) -> str:
    """Median (p90) per stage, FPS and CPU per case, as a markdown table."""
    head = ["case", "pipeline", "threads", "fmt", "input"] + [f"{s} ms" for s in stages] + ["FPS", "CPU"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cases:
        cells = [c["name"], c["pipeline"], str(c["threads"]), c["pixel_format"],
                 "x".join(map(str, c["input_size"]))]
        for s in stages:
            st = c["stages"].get(s)
            cells.append(f"{st['median']:.2f} ({st['p90']:.2f})" if st else "-")
        cells += [f"{c['fps']:.1f}", f"{100 * c['cpu_util']:.0f}%"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot(result: dict[str, Any], path: str) -> None:
    """Median per stage per case (bars, p90 whiskers), the end-to-end latency histogram, and the
    soak RSS curve if any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = result["cases"]
    soak = result.get("soak")
    panels = 3 if soak else 2
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5), squeeze=False)
    hist = axes[0][1]  # end-to-end latency histogram, one series per case
    for c in cases:
        xs = c.get("end_to_end_samples_ms") or []
        if xs:
            hist.hist(xs, bins=min(40, max(5, len(xs) // 3)), alpha=0.55, label=c["name"])
    hist.set_xlabel("end-to-end latency (ms)")
    hist.set_ylabel("iterations")
    hist.legend(fontsize=7)
    ax = axes[0][0]
    stages = [s for s in STAGES if any(s in c["stages"] for c in cases)]
    width = 0.8 / max(len(cases), 1)
    for i, c in enumerate(cases):
        med = [c["stages"].get(s, {}).get("median", 0.0) for s in stages]
        err = [max(c["stages"].get(s, {}).get("p90", 0.0) - m, 0.0) for s, m in zip(stages, med)]
        ax.bar([j + i * width for j in range(len(stages))], med, width, yerr=err, label=c["name"])
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(stages))], stages)
    ax.set_ylabel("ms (median, whisker p90)")
    ax.legend(fontsize=7)
    if soak:
        ax2 = axes[0][2]
        xs, ys = zip(*soak["rss_mb"])
        ax2.plot(xs, ys)
        ax2.set_xlabel("frame")
        ax2.set_ylabel("RSS MB")
        ax2.set_title(f"soak: {soak['slope_mb_per_1k_frames']:+.3f} MB / 1k frames")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
