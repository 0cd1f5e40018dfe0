"""benchmarks/bench_runtimes.py end to end on the bundled demo model with tiny counts, so it cannot rot.
Whatever peers are installed run; the absent ones must be skip lines, not failures. No timed assertions:
the numbers of such a short run are noise; what is checked is that every row ran, with its accuracy."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from helpers import load_benchmark, write_scenes

DEMO = Path(__file__).resolve().parents[3] / "runtime" / "data" / "demo.onnx"


def _script():
    return load_benchmark("bench_runtimes")


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def test_every_row_runs_or_names_why_not(tmp_path, capsys):
    photos = write_scenes(tmp_path / "photos", 2, seed=7)
    calib = write_scenes(tmp_path / "calib", 8, seed=40)
    out = tmp_path / "r.json"
    rc = _script().main(["--model", str(DEMO), "--images", *map(str, sorted(photos.iterdir())),
                         "--calib", str(calib), "--workdir", str(tmp_path / "work"), "--no-map",
                         "--no-ultralytics", "--rounds", "1", "--iterations", "2", "--warmup", "0",
                         "--pause", "0", "--paired", "2", "--json", str(out)])
    assert rc == 0
    rep = json.loads(out.read_text())
    rows, skipped = rep["rows"], rep["skipped"]
    assert "ORT fp32" in rows and "edgerun detect fp32" in rows, skipped
    for p in ("fp16", "int8"):  # built by finish_onnx; an export refused in an old stack is a named skip
        assert (f"ORT {p}" in rows and f"edgerun detect {p}" in rows) or \
            skipped[f"ORT {p}"].startswith("export failed"), (p, skipped)
    for name, module in [("OpenVINO f32", "openvino"), ("OpenVINO default", "openvino"),
                         ("NCNN fp32", "ncnn"), ("NCNN default", "ncnn")]:
        if _installed(module):
            assert name in rows or "pnnx" in skipped.get(name, ""), skipped
        else:
            assert "not installed" in skipped[name]
    for img in rep["images"]:
        t = rep["timing"][img]
        assert set(t) == set(rows) and all(v["best_median_ms"] > 0 for v in t.values())
        assert t["ORT fp32"]["speedup"] == pytest.approx(1.0)
    assert rep["f1"]["edgerun detect fp32"]["f1"] == 1.0 and rep["f1"]["edgerun detect fp32"]["ref_boxes"] > 0
    assert rep["f1"]["ORT fp32"]["f1"] == 1.0  # the same file through the same pre/post-processing
    assert all(0.0 <= v["f1"] <= 1.0 for v in rep["f1"].values())
    for img in rep["images"]:  # detect() vs bare of the same session, paired, for every detect row
        pr = rep["paired"][img]
        assert set(pr) == {r.removeprefix("edgerun detect ") for r in rows if r.startswith("edgerun detect ")}
        for v in pr.values():
            assert v["pair_ratio"] > 0 and v["bare_ms"] > 0
            assert v["detect_ms"] >= v["inference_ms"] > 0 and v["preprocess_ms"] > 0
    text = capsys.readouterr().out
    assert "load average start" in text and "detect / bare (paired)" in text
    assert "detect fp32 / bare ORT fp32 (paired)" in text
    if "ORT int8" in rows:  # the oldest stack's onnx refuses the int8 export: a named skip above
        assert "| ORT int8 |" in text and "detect int8 / bare ORT int8" in text


def test_built_files_are_reused_under_their_own_variant(tmp_path):
    """A second run finds the files of the first in --workdir, each for its own variant (a cached "fp32 raw"
    once replaced "fp32" itself, and "int8 graph" replaced "int8")."""
    photos = write_scenes(tmp_path / "photos", 2, seed=7)
    calib = write_scenes(tmp_path / "calib", 8, seed=40)
    bench = _script()
    args = (str(DEMO), list(bench.PRECISIONS), tmp_path / "work", str(calib),
            [str(p) for p in sorted(photos.iterdir())], {}, 2)
    first, skipped = bench.prepare_models(*args)
    again, skipped_again = bench.prepare_models(*args)
    assert again == first and first["fp32"] == str(DEMO), (first, again)
    assert len(set(first.values())) == len(first)  # one file per variant
    assert set(first) | set(skipped) == set(bench.PRECISIONS) and skipped_again == skipped


def test_absent_model_measures_nothing_and_says_so(tmp_path, capsys):
    assert _script().main(["--model", str(tmp_path / "none.onnx"), "--no-map"]) == 0
    assert "absent, nothing measured" in capsys.readouterr().err


@pytest.mark.skipif(not _installed("ncnn"), reason="ncnn not installed (benchmark venv only)")
def test_ncnn_matches_onnxruntime_on_the_demo_model(tmp_path):
    """pnnx takes the ONNX file directly; NCNN at fp32 gives ONNX Runtime's raw outputs."""
    import numpy as np

    mod = _script()
    ort_run, _ = mod.ort_backend(str(DEMO), 1)
    ncnn_run, note = mod.ncnn_backend(str(DEMO), 1, tmp_path, (1, 3, 320, 320), 1, fp16=False)
    x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    a, b = ort_run(x)[0], ncnn_run(x)[0]
    assert a.shape == b.shape and np.abs(a - b).max() <= 1e-3 * max(1.0, np.abs(a).max()), note
