"""int8 export choices measured on this CPU: which nodes stay float (searched vs the fixed rule) and the QDQ
options (per-channel vs per-tensor weights, U8S8 vs S8S8, reduce_range), each with speed, gate F1 and mAP.

    python benchmarks/bench_int8.py [--model M.onnx] [--calib DIR] [--val DIR] [--rounds 3] [--runs 15]

1. ``finish_onnx(precision="int8", float_nodes="search")``: the float-node search (``export.int8search``);
2. the fixed rule (``float_nodes="fixed"``) for comparison (the search trials show the other sets);
3. on the searched float set, each QDQ variant: U8S8 per-channel (the default), U8S8 per-tensor, S8S8
   per-channel, U8S8 per-channel with ``reduce_range``;
then every file (and fp32) timed as a bare ``Session.run`` on the first held-out image's tensor, blocks
interleaved (``bench_peers.run_blocks``: alternating order, best block median), with the export gate's
box F1 vs fp32 (held-out calibration images, IoU >= 0.9) and coco128 mAP50-95 (``export.val.coco_map``).
Files are kept in ``--workdir``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _shared import SHARED  # noqa: E402

VARIANTS = {"u8s8 per-channel": {}, "u8s8 per-tensor": {"per_channel": False},
            "s8s8 per-channel": {"activation": "s8"}, "u8s8 per-channel reduce_range": {"reduce_range": True}}


def main(argv: list[str] | None = None) -> int:
    from edgerun.runtime import cpu_budget

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(SHARED / "models" / "yolov8n_640_fp32dq.onnx"))
    ap.add_argument("--calib", default=str(SHARED / "datasets" / "coco128" / "images" / "train2017"))
    ap.add_argument("--val", default=str(SHARED / "datasets" / "coco128" / "images" / "train2017"))
    ap.add_argument("--no-map", action="store_true")
    ap.add_argument("--no-variants", action="store_true", help="only the float-node search and the fixed rule")
    ap.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "edgerun-bench-int8"))
    ap.add_argument("--threads", type=int, default=cpu_budget())
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    if not Path(a.model).exists() or not Path(a.calib).is_dir():
        print(f"bench_int8: absent, nothing measured: {a.model} or {a.calib}", file=sys.stderr)
        return 0

    from bench_peers import loadavg, run_blocks
    from bench_runtimes import cpu_flags

    from edgerun.export.finish import finish_onnx
    from edgerun.runtime import Detector, Session
    from edgerun.runtime.bench import machine_record
    from edgerun.runtime.sources import read_image

    wd = Path(a.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"load_avg_start": loadavg(), "cpu_flags": cpu_flags(), "files": {}, "gate": {}}
    stem = Path(a.model).stem

    def build(name: str, **kw) -> None:
        out = wd / f"{stem}_{name.replace(' ', '_')}.onnx"
        t0 = time.perf_counter()
        rep = finish_onnx(a.model, str(out), precision="int8", calib=a.calib, threads=a.threads, force=True, **kw)
        report["files"][name] = str(out)
        report["gate"][name] = {"f1": round(rep["f1"], 4), "ok": rep["ok"], "float_nodes": len(rep["excluded_nodes"]),
                                "build_s": round(time.perf_counter() - t0, 1)}
        if rep.get("int8_search"):
            report["search"] = rep["int8_search"]
        print(f"bench_int8: {name}: gate F1 {rep['f1']:.3f} ({'pass' if rep['ok'] else 'FAIL'}), "
              f"{len(rep['excluded_nodes'])} float nodes, {time.perf_counter() - t0:.0f} s", flush=True)

    build("searched", float_nodes="search")
    chosen = report["search"]["float_nodes"]
    build("fixed rule", float_nodes="fixed")
    if not a.no_variants:
        for name, qdq in VARIANTS.items():
            if qdq:
                build(name, float_nodes=chosen, qdq=qdq)
    ref = Detector.from_path(a.model, threads=a.threads)
    from edgerun.export.finish import split_calibration
    from edgerun.export.verify import image_files

    _, held = split_calibration(image_files(a.calib, "--calib"), 32, True)
    tensor = ref.preprocess(read_image(held[0]))[0].copy()
    files = {"fp32": a.model, **report["files"]}
    sessions = {k: Session(p, threads=a.threads) for k, p in files.items()}
    name = ref.spec.input_name
    fns = {k: (lambda s=s: s.run({name: tensor})) for k, s in sessions.items()}
    timing = run_blocks(fns, rounds=a.rounds, iterations=a.runs, warmup=3, pause=0.2)
    base = timing["fp32"]["best_median_ms"]
    report["timing"] = {k: {"best_median_ms": v["best_median_ms"], "block_median_ms": v["block_median_ms"],
                            "speedup_vs_fp32": round(base / v["best_median_ms"], 3)} for k, v in timing.items()}
    report["load_avg_after_timing"] = loadavg()
    if not a.no_map and Path(a.val).is_dir():
        from edgerun.export.val import coco_map

        report["map"] = coco_map(files, a.val, threads=a.threads)
    report["load_avg_end"] = loadavg()
    report["machine"] = machine_record([a.threads])
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in report["cpu_flags"].items())
    print(f"{report['machine']['cpu_model']} ({flags}); load average start {report['load_avg_start']}, "
          f"after timing {report['load_avg_after_timing']}, end {report['load_avg_end']}")
    s = report["search"]
    print(f"search: groups {s['groups']}; chosen {s['chosen']['groups']} ({len(chosen)} float nodes), "
          f"{len(s['trials'])} trials:")
    for t in s["trials"]:
        print(f"  float {t['groups'] or 'nothing'} ({t['float_nodes']} nodes): F1 {t['f1']:.3f} "
              f"{'pass' if t['passed'] else 'fail'}" + (f", {t['ms']:.1f} ms (blocks {t['block_ms']})" if t['ms'] else ""))
    m = report.get("map") or {}
    ref_map = m.get("fp32", {}).get("map50_95")
    print("| file | ms (x fp32) | gate F1 vs fp32 | float nodes | mAP50-95 (d vs fp32) |\n|---|---|---|---|---|")
    for k, t in report["timing"].items():
        g = report["gate"].get(k, {"f1": 1.0, "float_nodes": "all"})
        mm = m.get(k, {}).get("map50_95")
        mtxt = f"{mm:.3f} ({mm - ref_map:+.3f})" if mm is not None and ref_map is not None else "-"
        print(f"| {k} | {t['best_median_ms']:.1f} ({t['speedup_vs_fp32']:.2f}x) | {g['f1']:.3f} | "
              f"{g['float_nodes']} | {mtxt} |")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
