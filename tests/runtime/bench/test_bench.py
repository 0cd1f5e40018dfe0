"""The benchmark machinery: statistics on known samples, accumulators, warm-up, interleaving,
Ctrl-C, the ``edgerun benchmark`` CLI and its JSON/CSV schema. No timed assertions: speed targets
live in benchmarks/ (README "Layout")."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from conftest import shared_file

from edgerun.runtime.bench import STAGES, STAT_KEYS, Case, Recorder, machine_record, measure, summarize
from edgerun.runtime.bench.report import CSV_COLUMNS, SCHEMA
from edgerun.runtime.cli import main
from edgerun.runtime.session import DEFAULT_SPIN


# -- statistics ---------------------------------------------------------------------------------
def test_summarize_known_samples_unsorted_input():
    s = summarize([5.0, 1.0, 4.0, 2.0, 3.0])
    assert s == {"count": 5, "min": 1.0, "mean": 3.0, "median": 3.0, "p90": pytest.approx(4.6),
                 "p95": pytest.approx(4.8), "p99": pytest.approx(4.96), "max": 5.0}


def test_summarize_even_count_median_is_mean_of_middle_pair():
    assert summarize([10, 1, 3, 2])["median"] == 2.5


@pytest.mark.parametrize("n", [1, 2, 7, 30, 101])
def test_summarize_matches_numpy_percentiles(n):
    x = np.random.default_rng(n).lognormal(size=n)
    s = summarize(x)
    for k, q in (("median", 50), ("p90", 90), ("p95", 95), ("p99", 99)):
        assert s[k] == pytest.approx(np.percentile(x, q), rel=1e-12)
    assert (s["min"], s["max"], s["count"]) == (x.min(), x.max(), n)
    assert s["mean"] == pytest.approx(x.mean(), rel=1e-12)


def test_summarize_empty_is_nan_not_an_error():
    s = summarize([])
    assert s["count"] == 0 and all(math.isnan(s[k]) for k in STAT_KEYS[1:])


# -- measuring loop with fake pipelines -----------------------------------------------------------
class _Source:
    def __init__(self, decode_ms=None):
        self.decode_ms, self.reads = decode_ms, []

    def read(self, i):
        self.reads.append(i)
        return np.zeros((4, 4, 3), np.uint8), self.decode_ms


class _Pipe:
    def __init__(self, name, log, fail_at=None):
        self.name, self.log, self.fail_at, self.calls = name, log, fail_at, 0

    def run(self, image, rec):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt
        self.log.append(self.name)
        for stage in ("preprocess", "inference", "postprocess"):
            rec.clock(stage)


def test_measure_excludes_warmup_and_uses_fresh_accumulators():
    log = []
    cases = [Case("a", "edgerun", {}), Case("b", "baseline", {})]
    assert cases[0].recorder is not cases[1].recorder
    src = _Source(decode_ms=1.5)
    measure([_Pipe("a", log), _Pipe("b", log)], cases, src, iterations=5, warmup=2)
    for c in cases:
        d = c.to_dict()
        assert d["warmup"]["count"] == 2 and len(d["warmup"]["samples_ms"]) == 2
        assert d["iterations"] == 5 and set(d["stages"]) == set(STAGES)
        assert all(d["stages"][s]["count"] == 5 for s in STAGES)
        assert d["stages"]["decode"]["median"] == 1.5
        parts = sum(c.recorder.samples[s][0] for s in STAGES[:-1])
        assert c.recorder.samples["end_to_end"][0] >= parts * (1 - 1e-9)  # e2e contains every stage
    assert src.reads == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]  # both pipelines see frame i
    assert log[:4] == ["a", "b", "b", "a"]  # order alternates each iteration


def test_measure_keeps_results_on_ctrl_c():
    cases = [Case("a", "edgerun", {})]
    measure([_Pipe("a", [], fail_at=4)], cases, _Source(), iterations=10, warmup=1)
    d = cases[0].to_dict()
    assert d["interrupted"] and d["iterations"] == 2 and "decode" not in d["stages"]


def test_recorder_warmup_only_keeps_end_to_end():
    r = Recorder()
    r.begin(2.0)
    r.clock("preprocess")
    r.end(warm=True)
    assert r.samples == {} and len(r.warmup) == 1 and r.warmup[0] >= 2.0


def test_machine_record_fields():
    m = machine_record([2])
    assert {"cpu_model", "logical_cpus", "usable_cpus", "governor", "os", "python", "versions",
            "threads", "warnings"} <= set(m)
    assert set(m["versions"]) == {"onnxruntime", "numba", "numpy", "opencv"}
    assert m["threads"]["ort_intra_op"] == [2] and "numba_threading_layer" in m["threads"]
    if not m["governor"]:
        assert any("governor" in w for w in m["warnings"])


# -- camera formats ----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt,code", [("nv12", "COLOR_YUV2BGR_NV12"), ("nv21", "COLOR_YUV2BGR_NV21"),
                                      ("i420", "COLOR_YUV2BGR_I420"), ("yuyv", "COLOR_YUV2BGR_YUYV")])
def test_to_pixel_format_round_trips_through_opencv(fmt, code):
    import cv2

    from edgerun.runtime.bench.inputs import to_pixel_format

    rng = np.random.default_rng(0)
    bgr = cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (9, 9), 3)
    back = cv2.cvtColor(to_pixel_format(bgr, fmt), getattr(cv2, code))
    assert np.abs(back.astype(int) - bgr).mean() < 4  # chroma subsampling loses a little


# -- the CLI -----------------------------------------------------------------------------------
@pytest.fixture
def model():
    return str(shared_file("models", "yolov8n_320_int8dyn.onnx"))


@pytest.fixture
def bus():
    return str(shared_file("images", "bus.jpg"))


def test_benchmark_writes_documented_json_and_csv(model, bus, tmp_path, capsys):
    j, c = tmp_path / "r.json", tmp_path / "r.csv"
    code = main(["benchmark", model, bus, "--iterations", "3", "--warmup", "1", "--threads", "1",
                 "--compare", "baseline", "--json", str(j), "--csv", str(c)])
    out = capsys.readouterr().out
    assert code == 0
    assert "=== edgerun benchmark ===" in out and "Ratio baseline@1t / edgerun@1t" in out
    r = json.loads(j.read_text())
    assert r["schema"] == SCHEMA and not r["interrupted"]
    assert {"created", "command", "machine", "cases", "ratios", "cold_start", "soak"} <= set(r)
    assert [x["pipeline"] for x in r["cases"]] == ["edgerun", "baseline"]
    for case in r["cases"]:
        assert case["iterations"] == 3 and case["warmup"]["count"] == 1 and case["threads"] == 1
        assert case["spin"] == DEFAULT_SPIN
        assert case["input_size"] == [320, 320] and case["fps"] > 0 and case["cpu_util"] > 0
        assert set(case["stages"]) == set(STAGES)
        assert all(set(s) == set(STAT_KEYS) for s in case["stages"].values())
    assert set(r["ratios"][0]["stages"]) == set(STAGES)
    rows = list(csv.DictReader(c.open()))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 2 * (len(STAGES) + 1)


def test_benchmark_camera_format_soak_and_sweep(model, bus, tmp_path, capsys):
    j = tmp_path / "r.json"
    code = main(["benchmark", model, bus, "--iterations", "2", "--warmup", "0", "--threads", "1,2",
                 "--pixel-format", "nv12", "--soak", "12", "--spin", "stop", "--json", str(j)])
    assert code == 0, capsys.readouterr().err
    r = json.loads(j.read_text())
    assert [c["threads"] for c in r["cases"]] == [1, 2]
    assert all("decode" not in c["stages"] and c["pixel_format"] == "nv12" for c in r["cases"])
    assert all(c["spin"] == "stop" for c in r["cases"])
    assert r["soak"]["frames"] == 12 and len(r["soak"]["rss_mb"]) >= 2


@pytest.mark.parametrize("extra,message", [
    (["--iterations", "0"], "--iterations: expected a positive count"),
    (["--iterations", "3", "--duration", "1"], "conflict"),
    (["--duration", "0"], "--duration"),
    (["--soak", "5", "--compare", "baseline"], "--soak"),
    (["--threads", "a,b"], "--threads"),
    (["--threads", "1,1"], "--threads"),
    (["--batch", "2"], "fixed batch of 1"),
    (["--imgsz", "640"], "is fixed to 320x320"),
    (["--cold-miss"], "--cold N"),
])
def test_benchmark_bad_options_exit_2(model, bus, extra, message, capsys):
    if "--iterations" not in extra and "--duration" not in extra:
        extra = ["--iterations", "1", *extra]
    assert main(["benchmark", model, bus, "--warmup", "0", *extra]) == 2
    assert message in capsys.readouterr().err


def test_benchmark_missing_model_or_source(model, tmp_path, capsys):
    assert main(["benchmark", str(tmp_path / "none.onnx")]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert main(["benchmark", model, str(tmp_path / "none.jpg")]) == 2
    assert "source not found" in capsys.readouterr().err


def test_benchmark_plot_without_matplotlib_is_a_clear_error(model, bus, tmp_path, capsys):
    from edgerun.runtime.bench.report import plot_available

    if plot_available():
        pytest.skip("matplotlib is installed")
    assert main(["benchmark", model, bus, "--plot", str(tmp_path / "p.png")]) == 2
    assert "needs matplotlib" in capsys.readouterr().err


def test_benchmark_compare_ultralytics_when_absent_is_a_clear_error(model, bus, capsys):
    try:
        import ultralytics  # noqa: F401
        pytest.skip("ultralytics is installed")
    except ImportError:
        pass
    assert main(["benchmark", model, bus, "--iterations", "1", "--compare", "ultralytics"]) == 2
    assert "'ultralytics' package is not installed" in capsys.readouterr().err


def test_baseline_peer_finds_the_same_objects(model, bus_bgr):
    from edgerun.runtime import Detector
    from edgerun.runtime.bench.peers import BaselinePipeline
    from helpers import match

    det = Detector.from_path(model, threads=1)
    ours = det.detect(bus_bgr)
    peer = BaselinePipeline(det)
    x, geo = peer.preprocess(bus_bgr)
    xyxy, conf, cls = peer.postprocess(peer.sess.run(None, {peer.input: x})[0], geo)
    pairs, up, ur = match(ours.xyxy, ours.confidence, ours.class_id, xyxy, conf, cls, 0.9)
    assert len(ours) >= 4 and not up and not ur


@pytest.mark.slow
def test_cold_start_child_reports_every_phase(model, bus):
    from edgerun.runtime.bench.cold import spawn_once

    rep = spawn_once(model, bus, threads=1)
    assert rep["detections"] >= 4 and rep["peak_rss_mb"] > 0
    assert rep["time_to_first_result_ms"] >= rep["session_ms"] > 0


def test_benchmark_plot_writes_breakdown_and_histogram(model, bus, tmp_path):
    from edgerun.runtime.bench.report import plot_available

    if not plot_available():
        pytest.skip("matplotlib is not installed (the `plot` extra)")
    import cv2

    out = tmp_path / "p.png"
    assert main(["benchmark", model, bus, "--iterations", "4", "--warmup", "1", "--plot", str(out)]) == 0
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] > 1.5 * img.shape[0]  # two panels side by side


def test_interleaved_alternates_and_keeps_samples_in_round_order():
    from edgerun.runtime.bench import interleaved

    calls = []
    res = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 4, warmup=1,
                      keep_samples=True)
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]  # warm-up, then alternating rounds
    for r in res.values():
        assert r["count"] == 4 and len(r["samples_ms"]) == 4 and len(r["warmup_ms"]) == 1
        assert sorted(r["samples_ms"])[0] == r["min"] and all(ms >= 0 for ms in r["samples_ms"])
    assert "samples_ms" not in interleaved({"a": lambda: None}, 2, warmup=0)["a"]
