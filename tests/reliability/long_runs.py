"""The long reliability runs, with the figures for the README "Reliability" section.

    python tests/reliability/long_runs.py [--images 2000] [--calls 2000] [--fuzz 500] [--only images,models,...]

- images: a generated corpus of malformed files (tests/reliability/badimages.py) plus the six photos
  through ``edgerun predict DIR --json`` in a child: exit status, files reported, peak RSS.
- models: every generated hostile ONNX file through ``edgerun info``, ``Detector.from_path`` and
  ``edgerun export``: refusals, slowest answer, files written.
- threads: 8 threads sharing one Detector and 8 with one each vs a serial run (bit-identical?).
- fuzz: the property tests of tests/reliability/fuzz_api.py with more examples, in a child.
The soak run is benchmarks/soak.py. Timings are not the point here; counts are.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = REL = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # this folder's corpora and tests/helpers, run as a script

from badimages import add_special_files, make_corpus  # noqa: E402
from reliability_util import json_records, run_child, run_cli, run_pytest_child  # noqa: E402

from helpers import shared_dir  # noqa: E402 - $EDGERUN_SHARED or ../shared

SHARED = shared_dir()
MODEL = SHARED / "models" / "yolov8n_320_int8dyn.onnx"
PHOTOS = ("bus.jpg", "zidane.jpg", "astronaut.png", "coffee.png", "chelsea.png", "squirrel_cls.jpg")


def bad_images(n: int, tmp: Path) -> dict:
    d = tmp / "corpus é"
    expect = make_corpus(d, n, seed=2)
    expect.update(add_special_files(d))
    for p in PHOTOS:
        os.symlink(SHARED / "images" / p, d / f"photo {p}")
        expect[f"photo {p}"] = "good"
    t0 = time.perf_counter()
    res = run_cli(["predict", str(MODEL), str(d), "--json"], timeout=3600)
    recs = {os.path.basename(r["source"]): r for r in json_records(res.stdout)}
    failed = {k for k, r in recs.items() if "error" in r}
    return {"files": len(expect), "exit": res.returncode, "crashed": res.crashed,
            "records": len(recs), "lost": len(set(expect) - set(recs)),
            "reported_errors": len(failed), "processed": len(recs) - len(failed),
            "good_failed": sorted(k for k in failed if expect.get(k) == "good"),
            "bad_processed": sorted(k for k in set(recs) - failed if expect.get(k) == "bad"),
            "traceback": "Traceback" in res.stderr, "peak_rss_mb": res.maxrss_mb,
            "stderr_lines_from_libraries": sum(1 for ln in res.stderr.splitlines()
                                               if ln.strip() and not ln.lower().startswith("edgerun")),
            "seconds": round(time.perf_counter() - t0, 1)}


def hostile_models(tmp: Path) -> dict:
    from hostile_models import make_models

    models = make_models(tmp / "models")
    listing = tmp / "models.txt"
    listing.write_text("".join(f"{p}\n" for _, p in models), encoding="utf-8")
    out = tmp / "export-out"
    out.mkdir()
    res = run_child([sys.executable, str(REL / "hostile_driver.py"), str(listing), str(out)], timeout=1800)
    recs = json_records(res.stdout)
    return {"models": len(models), "crashed": res.crashed, "answered": len(recs),
            "refused_by_detector": sum(r["error_type"] is not None for r in recs),
            "info_exit_2": sum(r["info_exit"] == 2 for r in recs),
            "export_exit_2": sum(r["export_exit"] == 2 for r in recs),
            "tracebacks": sum("Traceback" in r["info_stderr"] + r["export_stderr"] for r in recs),
            "slowest_s": {k: round(max(r[k] for r in recs), 2) for k in ("info_s", "load_s", "export_s")},
            "files_written": len(list(out.iterdir())),
            "ort_saw_outside_refs": sum(r["ort_called"] for r, (c, _) in zip(recs, models)
                                        if c.startswith("external_outside"))}


def threads(calls: int, model: str) -> dict:
    res = run_child([sys.executable, str(REL / "concurrency.py"), model, str(calls), "8"], timeout=7200)
    out = json_records(res.stdout)
    return out[0] if out else {"crashed": res.crashed, "exit": res.returncode, "stderr": res.stderr[-2000:]}


def fuzz(examples: int, boundscheck: bool, tmp: Path) -> dict:
    env = {"EDGERUN_FUZZ_EXAMPLES": str(examples)}
    if boundscheck:
        env.update(NUMBA_BOUNDSCHECK="1", EDGERUN_CACHE_DIR=str(tmp / "bc-cache"))
    res = run_pytest_child(REL / "fuzz_api.py", env_extra=env, timeout=7200)
    return {"examples_per_test": examples, "boundscheck": boundscheck, "crashed": res.crashed,
            "exit": res.returncode, "summary": res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--threads-model", default=str(MODEL), help="model for the thread run; 'tiny': the "
                    "generated millisecond detector")
    ap.add_argument("--fuzz", type=int, default=500)
    ap.add_argument("--only", default="images,models,threads,fuzz")
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="edgerun-reliability-") as t:
        tmp = Path(t)
        if "images" in only:
            report["images"] = bad_images(args.images, tmp)
        if "models" in only:
            report["models"] = hostile_models(tmp)
        if "threads" in only:
            model = args.threads_model
            if model == "tiny":
                from hostile_models import busy_model
                model = str(busy_model(tmp))
            report["threads"] = threads(args.calls, model)
        if "fuzz" in only:
            report["fuzz"] = [fuzz(args.fuzz, False, tmp), fuzz(max(50, args.fuzz // 5), True, tmp)]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
