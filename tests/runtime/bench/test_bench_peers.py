"""benchmarks/bench_peers.py end to end on the bundled demo model with tiny counts (it must not rot),
its load helpers, and the session spin modes it measures. No timed assertions: the numbers of
such a short run are noise; what is checked is that every case ran and reported."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgerun.runtime.session import DEFAULT_SPIN, SPIN_MODES, Session, spin_config, spin_mode

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "benchmarks" / "bench_peers.py"
DEMO = ROOT / "runtime" / "data" / "demo.onnx"


def _bench_peers():
    spec = importlib.util.spec_from_file_location("bench_peers", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("spin, mode", [(None, DEFAULT_SPIN), (False, "off"), (True, "on"), ("off", "off"),
                                        ("on", "on"), ("stop", "stop"), ("Stop", "stop"),
                                        ("auto", "auto")])
def test_spin_mode_names(spin, mode):
    assert spin_mode(spin) == mode


def test_default_spin_is_a_mode():
    assert DEFAULT_SPIN in SPIN_MODES


@pytest.mark.parametrize("bad", ["fast", ""])
def test_unknown_spin_mode_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=r"spin: expected one of \['auto', 'off', 'on', 'stop'\]"):
        spin_mode(bad)


@pytest.mark.parametrize("bad", [1, 0.5, ["on"]])
def test_spin_of_wrong_type_is_a_type_error(bad):
    with pytest.raises(TypeError, match="spin: expected a str, bool or None"):
        spin_mode(bad)


@pytest.mark.parametrize("spin, allow, stop", [("off", "0", ""), ("on", "1", ""), ("stop", "1", "1"),
                                               (True, "1", ""), (False, "0", "")])
def test_spin_mode_reaches_onnxruntime(spin, allow, stop):
    sess = Session(str(DEMO), threads=2, spin=spin)
    opts = sess._sess.get_session_options()
    assert sess.spin == spin_mode(spin)
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == allow
    assert opts.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert spin_config(spin).get("session.force_spinning_stop", "") == stop
    if stop:
        assert opts.get_session_config_entry("session.force_spinning_stop") == "1"


def test_load_processes_start_and_stop():
    bp = _bench_peers()
    procs = bp.start_load(1)
    try:
        assert [p.poll() for p in procs] == [None]
    finally:
        bp.stop_load(procs)
    assert all(p.returncode is not None for p in procs)


def test_ultralytics_absent_is_reported_not_raised(monkeypatch):
    from edgerun.runtime import Detector

    bp = _bench_peers()
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # import ultralytics -> ImportError
    peer, reason = bp.ultralytics_peer(Detector.from_path(str(DEMO)))
    assert peer is None and reason == "not installed"


def test_bench_peers_runs_every_case(tmp_path):
    import cv2

    from edgerun.runtime.demo import make_scene, write_sample_video

    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), make_scene(3)[0])
    video = tmp_path / "clip.avi"
    write_sample_video(str(video), frames=10)
    out = tmp_path / "peers.json"
    cmd = [sys.executable, str(SCRIPT), "--models", str(DEMO), "--images", str(image), "--iterations", "2",
           "--warmup", "1", "--rounds", "2", "--pause", "0", "--no-ultralytics", "--stream-video", str(video),
           "--stream-frames", "4", "--camera-samples", "2", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rep = json.loads(out.read_text())
    (res,) = rep["results"]
    expected = {"bare off", "bare on", "bare stop", "detect default", "detect off", "detect on",
                "detect stop", "numpy+OpenCV"}
    assert set(res["configs"]) == expected
    for c in res["configs"].values():
        assert len(c["block_median_ms"]) == 2 and c["best_median_ms"] == min(c["block_median_ms"]) > 0
    assert min(c["ratio_to_best_bare"] for k, c in res["configs"].items() if k.startswith("bare")) == 1.0
    assert len(set(res["boxes"].values())) == 1 and res["boxes"]["detect default"] > 0  # same objects
    assert res["unavailable"] == {"Ultralytics": "skipped (--no-ultralytics)"}
    assert "| demo.onnx | scene.png |" in proc.stdout and "skipped (--no-ultralytics)" in proc.stdout
    stream = rep["stream"]
    assert set(stream["fps"]) >= {"sequential", stream["default_case"]}
    assert all(len(v) == 2 and min(v) > 0 for v in stream["fps"].values())
    assert [c["format"] for c in rep["camera"]] == ["nv12", "i420", "yuyv"]
    assert all(c["ratio"] > 0 for c in rep["camera"])
    assert 0 < rep["rss"][0]["peak_rss_mb"] < 2000
    # detect() runs no parallel kernel: Numba's thread pool was never started in that process
    assert rep["numba_threading_layer"].startswith("not initialised")
    assert len(rep["load_avg_start"]) == 3 and len(rep["load_avg_end"]) == 3
