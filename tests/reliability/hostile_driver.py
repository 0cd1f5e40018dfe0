"""Child process for test_hostile_models: opens each model with ``edgerun info``,
``Detector.from_path`` and ``edgerun export MODEL -o OUT_DIR/N.onnx``; prints one JSON line per
model with each answer and its duration. A model stuck for over 30 s in all three aborts the child
with a traceback (faulthandler), which fails the test; the test holds each answer to 10 s."""
from __future__ import annotations

import contextlib
import faulthandler
import io
import json
import os
import sys
import time
import traceback

import onnxruntime

from edgerun.runtime import Detector
from edgerun.runtime.cli import main

ORT_CALLS: list[str] = []
_real_session = onnxruntime.InferenceSession


def _spy(path, *args, **kwargs):
    ORT_CALLS.append(str(path))
    return _real_session(path, *args, **kwargs)


def _cli(key: str, argv: list[str]) -> dict:
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return {f"{key}_exit": code, f"{key}_stderr": err.getvalue(), f"{key}_s": time.perf_counter() - t0}


def _load(path: str) -> dict:
    t0 = time.perf_counter()
    try:
        Detector.from_path(path)
    except Exception as exc:  # noqa: BLE001 - recorded and judged by the test
        frames = [f.name for f in traceback.extract_tb(exc.__traceback__)]
        return {"error_type": type(exc).__name__, "error": str(exc), "frames": frames,
                "mro": [c.__name__ for c in type(exc).__mro__], "load_s": time.perf_counter() - t0}
    return {"error_type": None, "load_s": time.perf_counter() - t0}


def run(path: str, out: str) -> dict:
    faulthandler.dump_traceback_later(30, exit=True)
    try:
        ORT_CALLS.clear()
        rec = {"path": path, **_cli("info", ["info", path]), **_load(path)}
        rec.update(_cli("export", ["export", path, "-o", out]))
        rec["ort_called"] = bool(ORT_CALLS)  # by any of the three
        return rec
    finally:
        faulthandler.cancel_dump_traceback_later()


if __name__ == "__main__":
    onnxruntime.InferenceSession = _spy
    with open(sys.argv[1], encoding="utf-8") as f:
        paths = [line.rstrip("\n") for line in f if line.strip()]
    out_dir = sys.argv[2]
    for i, p in enumerate(paths):
        print(json.dumps(run(p, os.path.join(out_dir, f"{i}.onnx"))), flush=True)
