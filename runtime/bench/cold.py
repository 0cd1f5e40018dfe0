"""Cold start, measured in fresh subprocesses: new process -> first detection.

Each child reports, on the parent's monotonic clock (``time.perf_counter`` is CLOCK_MONOTONIC on
Linux, shared by all processes): interpreter start-up, imports, image decode, session creation
(ORT import + graph optimisation), the first preprocess/inference/postprocess and a second, warm
pass (first minus second = one-time cost: Numba kernel load or compile, ORT first-run set-up),
time to first result and peak RSS. ``peak_rss_mb`` is the child's own high-water mark (Linux
``VmHWM``); ``ru_maxrss_mb`` is ``getrusage`` in the child, which Linux carries over from the parent
across fork/exec, so it reads at least the parent's RSS when the parent is big (a benchmark suite).

- cache hit: the user's kernel cache, primed by one discarded child (reported as ``prime``).
- cache miss: ``EDGERUN_CACHE_DIR`` pointing at an empty temporary directory (kernels compile).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from ..session import spin_mode
from . import summarize

__all__ = ["cold_start", "spawn_once", "ColdStartError"]


class ColdStartError(RuntimeError):
    """A cold-start child process failed; the message holds the last line of its stderr."""

_CHILD = r"""
import time, sys, json
t_first = time.perf_counter()
spawn, model, image, threads, spin, fmt = float(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
import numpy as np, cv2
t_libs = time.perf_counter()
from edgerun.runtime import Detector
from edgerun.runtime.bench.inputs import to_pixel_format
t_import = time.perf_counter()
img = cv2.imread(image)
t_read = time.perf_counter()
frame = to_pixel_format(img, fmt)
det = Detector.from_path(model, threads=threads or None, spin=spin)
t_session = time.perf_counter()
marks = []
for _ in range(2):  # detect() times its own stages (Detections.timings, ms)
    res = det.detect(frame, fmt)
    marks.append((time.perf_counter(), res.timings, len(res)))
import resource
def vm_hwm():
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None
ru_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
ms = lambda a, b: round((b - a) * 1e3, 3)
(a_end, a, n1), (_, b, _) = marks
r = lambda v: round(v, 3)
print(json.dumps({
    "interpreter_ms": ms(spawn, t_first), "import_numpy_cv2_ms": ms(t_first, t_libs),
    "import_edgerun_ms": ms(t_libs, t_import), "read_image_ms": ms(t_import, t_read),
    "session_ms": ms(t_read, t_session),
    "first_preprocess_ms": r(a["preprocess"]), "first_inference_ms": r(a["inference"]),
    "first_postprocess_ms": r(a["postprocess"]), "warm_preprocess_ms": r(b["preprocess"]),
    "warm_inference_ms": r(b["inference"]), "warm_postprocess_ms": r(b["postprocess"]),
    "kernel_first_call_ms": r(a["preprocess"] - b["preprocess"] + a["postprocess"] - b["postprocess"]),
    "time_to_first_result_ms": ms(spawn, a_end), "detections": n1,
    "peak_rss_mb": round(vm_hwm() or ru_max, 1), "ru_maxrss_mb": round(ru_max, 1)}))
"""


def spawn_once(model: str, image: str, *, threads: int = 0, spin: bool | str | None = None,
               pixel_format: str = "bgr", env: dict[str, str] | None = None, timeout: float = 600) -> dict[str, Any]:
    """One fresh ``python`` child: new process -> first detection. Returns its report."""
    args = [sys.executable, "-c", _CHILD, "", os.path.abspath(model), os.path.abspath(image), str(threads),
            spin_mode(spin), pixel_format]
    spawn = time.perf_counter()
    args[3] = repr(spawn)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=tempfile.gettempdir())
    wall = (time.perf_counter() - spawn) * 1e3
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ColdStartError(f"cold-start child failed (exit {proc.returncode}): {tail[0]}")
    rep = json.loads(proc.stdout.strip().splitlines()[-1])
    rep["process_wall_ms"] = round(wall, 3)  # includes interpreter shutdown
    return rep


def cold_start(model: str, image: str, *, runs: int = 3, miss: bool = False, threads: int = 0,
               spin: bool | str | None = None, pixel_format: str = "bgr") -> dict[str, Any]:
    """Cache-hit cold starts (``runs`` children after one discarded priming child) and, with
    ``miss``, one child compiling every kernel from an empty ``EDGERUN_CACHE_DIR``."""
    kw = dict(threads=threads, spin=spin, pixel_format=pixel_format)
    out: dict[str, Any] = {"model": os.path.abspath(model), "image": os.path.abspath(image),
                           "threads": threads, "spin": spin_mode(spin), "pixel_format": pixel_format}
    out["prime"] = spawn_once(model, image, **kw)
    hits = [spawn_once(model, image, **kw) for _ in range(runs)]
    out["hit_runs"] = hits
    out["hit"] = {k: summarize([h[k] for h in hits]) for k in hits[0]} if hits else {}
    out["miss"] = None
    if miss:
        with tempfile.TemporaryDirectory(prefix="edgerun-cold-") as tmp:
            out["miss"] = spawn_once(model, image, env={"EDGERUN_CACHE_DIR": tmp}, **kw)
    return out


def cold_summary(cold: dict[str, Any]) -> list[str]:
    """Human-readable lines for the summary block."""
    lines = []
    h = cold.get("hit") or {}
    if h:
        med = {k: v["median"] for k, v in h.items()}
        lines.append(f"Cold start (cache hit, median of {h['time_to_first_result_ms']['count']}): "
                     f"first result {med['time_to_first_result_ms']:.0f} ms = interpreter "
                     f"{med['interpreter_ms']:.0f} + imports {med['import_numpy_cv2_ms'] + med['import_edgerun_ms']:.0f}"
                     f" + image {med['read_image_ms']:.0f} + session {med['session_ms']:.0f} + first detect "
                     f"{med['first_preprocess_ms'] + med['first_inference_ms'] + med['first_postprocess_ms']:.0f}"
                     f" (kernel load {med['kernel_first_call_ms']:.0f}); peak RSS {med['peak_rss_mb']:.0f} MB")
    m = cold.get("miss")
    if m:
        lines.append(f"Cold start (cache miss, kernels compiled): first result "
                     f"{m['time_to_first_result_ms']:.0f} ms (kernel compile {m['kernel_first_call_ms']:.0f} ms); "
                     f"peak RSS {m['peak_rss_mb']:.0f} MB")
    return lines
