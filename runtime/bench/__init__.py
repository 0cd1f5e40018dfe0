"""The one measuring module behind ``edgerun benchmark`` and ``benchmarks/``.

- ``summarize(samples)``: count, min, mean, median, p90, p95, p99, max of *sorted* samples (linear
  interpolation between order statistics, numpy's default), in the samples' unit (ms here).
- ``Recorder``: fresh per-stage accumulators for one case; warm-up samples kept apart.
- ``measure(...)``: runs one or more pipelines over a frame source, interleaved iteration by
  iteration (so peers see the same noise), timing decode / preprocess / inference / postprocess
  and end-to-end, plus wall time, throughput and CPU utilisation (process CPU time / wall).
- ``machine_record()``: CPU, cores, governor, OS, versions, thread settings, Numba threading layer.

A pipeline is any object with ``name`` and ``run(image, clock)`` that calls ``clock(stage)`` after
each stage (see ``EdgerunPipeline``); peers live in ``bench/peers.py``.
"""
from __future__ import annotations

import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

__all__ = ["STAGES", "STAT_KEYS", "summarize", "Recorder", "Case", "EdgerunPipeline", "measure",
           "machine_record", "rss_mb", "time_calls"]

STAGES = ("decode", "preprocess", "inference", "postprocess", "end_to_end")
STAT_KEYS = ("count", "min", "mean", "median", "p90", "p95", "p99", "max")


def _percentile(sorted_samples: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default method)."""
    n = len(sorted_samples)
    pos = (n - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return float(sorted_samples[lo] + (sorted_samples[hi] - sorted_samples[lo]) * (pos - lo))


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Statistics of ``samples``: count, min, mean, median, p90, p95, p99, max (NaN when empty)."""
    s = sorted(float(x) for x in samples)
    if not s:
        return {k: (0 if k == "count" else math.nan) for k in STAT_KEYS}
    return {"count": len(s), "min": s[0], "mean": math.fsum(s) / len(s), "median": _percentile(s, 50),
            "p90": _percentile(s, 90), "p95": _percentile(s, 95), "p99": _percentile(s, 99),
            "max": s[-1]}


class Recorder:
    """Per-stage samples (ms) of one case. A new Recorder per case: accumulators never leak."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}
        self.warmup: list[float] = []  # end-to-end ms of the warm-up iterations, in order
        self._t = self._start = self._extra = 0.0
        self._current: dict[str, float] = {}

    def begin(self, decode_ms: float | None = None) -> None:
        """Start an iteration; ``decode_ms``: time already spent decoding its frame (or None)."""
        self._current = {} if decode_ms is None else {"decode": decode_ms}
        self._extra = decode_ms or 0.0
        self._start = self._t = time.perf_counter()

    def clock(self, stage: str) -> None:
        """Close ``stage`` now: it lasted since the previous clock (or begin)."""
        now = time.perf_counter()
        self._current[stage] = (now - self._t) * 1e3
        self._t = now

    def set(self, stage: str, ms: float) -> None:
        """Record a stage time measured elsewhere (e.g. a peer's own report)."""
        self._current[stage] = ms

    def end(self, warm: bool) -> float:
        """Close the iteration; warm-up iterations only keep their end-to-end time."""
        total = (time.perf_counter() - self._start) * 1e3 + self._extra
        if warm:
            self.warmup.append(total)
            return total
        for k, v in self._current.items():
            self.samples.setdefault(k, []).append(v)
        self.samples.setdefault("end_to_end", []).append(total)
        return total

    def stats(self) -> dict[str, dict[str, float]]:
        return {k: summarize(self.samples[k]) for k in STAGES if k in self.samples}


@dataclass
class Case:
    """One measured configuration and its results (the JSON ``cases[]`` entries)."""

    name: str
    pipeline: str
    params: dict[str, Any]
    recorder: Recorder = field(default_factory=Recorder)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    frames_per_iteration: int = 1
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        stages = self.recorder.stats()
        n = stages.get("end_to_end", {}).get("count", 0)
        fps = n * self.frames_per_iteration / self.wall_s if self.wall_s > 0 and n else 0.0
        w = self.recorder.warmup
        return {"name": self.name, "pipeline": self.pipeline, **self.params,
                "iterations": n, "wall_s": round(self.wall_s, 4), "fps": round(fps, 3),
                "cpu_util": round(self.cpu_s / self.wall_s, 3) if self.wall_s > 0 else 0.0,
                "interrupted": self.interrupted,
                "warmup": {"count": len(w), "first_ms": w[0] if w else None, "samples_ms": w,
                           "stats": summarize(w)},
                "stages": stages,
                "end_to_end_samples_ms": [round(v, 4) for v in self.recorder.samples.get("end_to_end", [])]}


class Pipeline(Protocol):
    name: str

    def run(self, image: np.ndarray, rec: Recorder) -> Any: ...


class EdgerunPipeline:
    """An edgerun task object's own timed step (``Task.run`` / ``run_batch``), stage by stage into
    the recorder: preprocess -> inference -> postprocess (one frame, or the frame ``batch`` times)."""

    def __init__(self, detector, pixel_format: str = "bgr", batch: int = 1, name: str = "edgerun"):
        self.det, self.fmt, self.batch, self.name = detector, pixel_format, batch, name

    def run(self, image: np.ndarray, rec: Recorder) -> Any:
        if self.batch == 1:
            return self.det.run(image, self.fmt, clock=rec.clock)
        # the same frame repeated: one camera, `batch` frames
        return self.det.run_batch([image] * self.batch, self.fmt, clock=rec.clock)


def measure(pipelines: Sequence[Pipeline], cases: Sequence[Case], source, *, iterations: int | None,
            duration: float | None = None, warmup: int = 10,
            progress: Callable[[int, int | None, float], None] | None = None) -> list[Case]:
    """Run ``pipelines`` interleaved (order alternating each iteration) over ``source``.

    ``source.read(i)`` returns ``(image, decode_ms or None)`` for iteration ``i``, the same frame
    for every pipeline. Stops after ``iterations`` measured iterations or ``duration`` seconds.
    Ctrl-C stops early: the cases keep what was measured and are flagged ``interrupted``.
    """
    if iterations is None and duration is None:
        raise ValueError("measure: give iterations or duration")
    n = len(pipelines)
    t_start, c_start = [0.0] * n, [0.0] * n
    i = 0
    try:
        for i in range(warmup):
            for k in _order(i, n):
                _one(pipelines[k], cases[k], source, i, warm=True)
        t0 = time.perf_counter()
        i = 0
        while (iterations is None or i < iterations) and \
                (duration is None or time.perf_counter() - t0 < duration):
            for k in _order(i, n):
                w0, c0 = time.perf_counter(), time.process_time()
                _one(pipelines[k], cases[k], source, warmup + i, warm=False)
                t_start[k] += time.perf_counter() - w0
                c_start[k] += time.process_time() - c0
            i += 1
            if progress:
                progress(i, iterations, time.perf_counter() - t0)
    except KeyboardInterrupt:
        for c in cases:
            c.interrupted = True
    for k, c in enumerate(cases):
        c.wall_s, c.cpu_s = t_start[k], c_start[k]
    return list(cases)


def _order(i: int, n: int) -> list[int]:
    return list(range(n)) if i % 2 == 0 else list(range(n))[::-1]


def _one(pipe: Pipeline, case: Case, source, i: int, warm: bool) -> None:
    image, decode_ms = source.read(i)  # timed inside the source (shared by peers for video)
    case.recorder.begin(decode_ms)
    pipe.run(image, case.recorder)
    case.recorder.end(warm)


def time_calls(fn: Callable[[], Any], n: int, warmup: int = 3) -> tuple[list[float], float, float]:
    """Call ``fn`` ``warmup`` times untimed, then ``n`` times: (ms samples, wall s, CPU s)."""
    for _ in range(warmup):
        fn()
    out = []
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out, time.perf_counter() - w0, time.process_time() - c0


def rss_mb() -> float:
    """Current resident set size of this process in MB (Linux /proc; else peak RSS)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def open_fds() -> int:
    """Open file descriptors of this process (Linux /proc; -1 elsewhere)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


# -- the machine record ------------------------------------------------------------------------
def machine_record(ort_threads: Sequence[int] = ()) -> dict[str, Any]:
    """Where the numbers were measured; ``warnings`` lists what makes them less trustworthy."""
    warnings: list[str] = []
    gov = _governors()
    if not gov:
        warnings.append("CPU frequency governor unreadable (no cpufreq in this VM/container?): "
                        "clock speed may vary between runs")
    elif set(gov) != {"performance"}:
        warnings.append(f"CPU governor is {sorted(set(gov))}, not 'performance': timings may include "
                        "frequency ramp-up")
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    if load and affinity and load[0] > 0.5 * affinity:
        warnings.append(f"load average {load[0]:.2f} on {affinity} CPUs: other processes compete; "
                        "compare ratios from one run, not absolute times")
    return {"cpu_model": _cpu_model(), "logical_cpus": os.cpu_count(), "usable_cpus": affinity,
            "governor": sorted(set(gov)) or None, "load_avg": [round(x, 2) for x in load] if load else None,
            "os": platform.platform(), "machine": platform.machine(),
            "python": platform.python_version(), "versions": _versions(),
            "threads": _thread_settings(ort_threads), "warnings": warnings}


def _governors() -> list[str]:
    out = []
    for cpu in range(os.cpu_count() or 1):
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor") as f:
                out.append(f.read().strip())
        except OSError:
            pass
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for mod in ("onnxruntime", "numba", "numpy", "cv2"):
        m = sys.modules.get(mod)
        if m is None:
            try:
                m = __import__(mod)
            except ImportError:
                m = None
        out["opencv" if mod == "cv2" else mod] = getattr(m, "__version__", None) if m else None
    return out


def _thread_settings(ort_threads: Sequence[int]) -> dict[str, Any]:
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet in this process
        layer = f"not initialised (configured: {numba.config.THREADING_LAYER})"
    env = {k: os.environ.get(k) for k in ("EDGERUN_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS",
                                           "EDGERUN_CACHE_DIR")}
    return {"ort_intra_op": list(ort_threads), "ort_inter_op": 1, "numba_threads": numba.get_num_threads(),
            "numba_threading_layer": layer, "env": env}


def interleaved(fns: dict[str, Callable[[], object]], samples: int, warmup: int = 5,
                keep_samples: bool = False) -> dict:
    """Time each callable ``samples`` times, alternating call order per round; warm-up kept apart.
    ``keep_samples``: also return each callable's ms in call order (``samples_ms``: index i is round i)."""
    warm = {name: [] for name in fns}
    for _ in range(warmup):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            warm[name].append((time.perf_counter() - t) * 1e3)
    out = {name: [] for name in fns}
    names = list(fns)
    for i in range(samples):
        for name in names if i % 2 == 0 else names[::-1]:
            t = time.perf_counter()
            fns[name]()
            out[name].append((time.perf_counter() - t) * 1e3)
    return {name: {"warmup_ms": [round(w, 3) for w in warm[name]], **summarize(out[name]),
                   **({"samples_ms": out[name]} if keep_samples else {})} for name in fns}
