"""Child process for test_hostile_models: opens each model with ``edgerun info`` and
``Detector.from_path``; prints one JSON line per model. A model taking over 10 s aborts the
child with a traceback (faulthandler), which fails the test."""
from __future__ import annotations

import contextlib
import faulthandler
import io
import json
import sys
import traceback

import onnxruntime

from edgerun.runtime import Detector
from edgerun.runtime.cli import main

ORT_CALLS: list[str] = []
_real_session = onnxruntime.InferenceSession


def _spy(path, *args, **kwargs):
    ORT_CALLS.append(str(path))
    return _real_session(path, *args, **kwargs)


def _info(path: str) -> dict:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["info", path])
    return {"info_exit": code, "info_stderr": err.getvalue()}


def _load(path: str) -> dict:
    try:
        Detector.from_path(path)
    except Exception as exc:  # noqa: BLE001 - recorded and judged by the test
        frames = [f.name for f in traceback.extract_tb(exc.__traceback__)]
        return {"error_type": type(exc).__name__, "error": str(exc), "frames": frames,
                "mro": [c.__name__ for c in type(exc).__mro__]}
    return {"error_type": None}


def run(path: str) -> dict:
    faulthandler.dump_traceback_later(10, exit=True)
    try:
        ORT_CALLS.clear()
        rec = {"path": path, **_info(path), **_load(path)}
        rec["ort_called"] = bool(ORT_CALLS)
        return rec
    finally:
        faulthandler.cancel_dump_traceback_later()


if __name__ == "__main__":
    onnxruntime.InferenceSession = _spy
    with open(sys.argv[1], encoding="utf-8") as f:
        paths = [line.rstrip("\n") for line in f if line.strip()]
    for p in paths:
        print(json.dumps(run(p)), flush=True)
