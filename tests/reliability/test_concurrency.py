"""Concurrency: 8 threads sharing one Detector and 8 threads with one each give results
bit-identical to a serial run, with no abort and no deadlock (child process with a timeout).
The long run (2,000 calls) is tests/reliability/long_runs.py."""
from __future__ import annotations

import os
import sys

import pytest
from conftest import shared_file
from hostile_models import busy_model
from reliability_util import HERE, json_records, run_child


@pytest.mark.parametrize("which, calls", [("tiny", 200), ("yolov8n_320", 24)])
def test_threads_match_serial_bit_for_bit(tmp_path, which, calls):
    """The generated tiny detector (hundreds of boxes per frame, ~ms per call) takes the many calls;
    the real int8 model checks ORT's own threads give identical numbers."""
    if which == "tiny":
        model = str(busy_model(tmp_path))
    else:
        model = str(shared_file("models", "yolov8n_320_int8dyn.onnx"))
    _check(run_child([sys.executable, str(HERE / "concurrency.py"), model, str(calls), "8"], timeout=300))


@pytest.mark.slow  # compiles the kernels from scratch
def test_first_calls_from_8_threads_with_a_cold_kernel_cache(tmp_path):
    """A server starting up: 8 threads hit a fresh Detector at once, so Numba compiles (or loads)
    every kernel under concurrent first calls. Fresh EDGERUN_CACHE_DIR; the tiny model."""
    env = dict(os.environ, EDGERUN_CACHE_DIR=str(tmp_path / "cache"))
    argv = [sys.executable, str(HERE / "concurrency.py"), str(busy_model(tmp_path)), "64", "8", "--threads-first"]
    _check(run_child(argv, env=env, timeout=400))


def _check(res) -> None:
    assert not res.crashed and res.returncode == 0, res.describe()
    (rep,) = json_records(res.stdout)
    assert rep["boxes"] > 0
    for mode in ("shared", "per_thread"):
        assert rep[mode]["errors"] == [], rep[mode]
        assert rep[mode]["missing"] == 0 and rep[mode]["mismatches"] == 0, rep
