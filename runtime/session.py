"""A thin ONNX Runtime wrapper for edge CPUs.

- One CPU budget (``cpu_budget()``) shared by ORT's intra-op threads and Numba's kernels. On mixed
  cores (``cpu_clusters``: RK3588's 4x A76 + 4x A55, Intel's P+E cores) it is the fastest cluster, and
  ORT's pool threads are pinned there (``session.intra_op_thread_affinities``); the ``edgerun``
  command also pins its own threads there, and with them the (serial) Numba kernels they run
  (``use_big_cores``). ``threads=`` or ``$EDGERUN_THREADS`` choose the count instead, unpinned.
- ORT spin-waiting is a per-use choice (``spin=``, one of ``SPIN_MODES``): ``"off"`` parks the
  intra-op threads as soon as they run out of work; ``"on"`` lets them spin-wait, which makes a
  tight loop of ``run()`` faster but keeps burning the cores after ``run()`` returns and slows
  whatever runs next (our kernels, other pipeline stages, the host application); ``"stop"`` spins
  inside ``run()`` and stops the threads the moment the last concurrent ``run()`` returns (ORT's
  ``session.force_spinning_stop``); ``"auto"`` is ``"stop"`` while other processes leave the
  session's cores idle and ``"off"`` while they compete (``cpuload.auto_spin``), measured at open
  and re-checked every ``AUTO_CHECK_S`` during runs (the ORT session is rebuilt in the background
  when the answer changes twice in a row). ``spin=None`` means ``DEFAULT_SPIN`` (``Session``,
  ``Detector.from_path``); see the README ("Threads and spinning") for the measurements behind it.
- Model files are checked before ORT sees them: missing/empty/unreadable files and ONNX external-data
  references that leave the model's folder are refused with a clear error.
- Static output shapes are preallocated and bound (IOBinding), so steady-state runs allocate nothing.
- A fully convolutional graph exported with a fixed input size can be reopened with symbolic H/W
  (``Session.with_symbolic_hw``, checked by ``graph.symbolic_hw_problem``) to run at any size.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from edgerun.kernels.errors import EdgerunError, EdgerunTypeError, EdgerunValueError

from .cpuload import OtherLoad, auto_spin

__all__ = ["Session", "ModelError", "cpu_budget", "cpu_clusters", "CpuClusters", "use_big_cores",
           "thread_affinities", "allowed_cpus", "TensorInfo", "SPIN_MODES", "DEFAULT_SPIN", "spin_mode",
           "spin_config"]

SPIN_MODES = ("auto", "off", "on", "stop")
# The spin policy of every session whose caller does not choose one (``spin=None``). Changing the
# default means changing this line only; benchmarks/bench_peers.py measures the three modes.
DEFAULT_SPIN = "auto"

AUTO_CHECK_S = 2.0  # spin="auto": seconds between re-checks of the other processes' load during runs
_AUTO_OPEN_S = 0.05  # the shortest load window behind the choice at open (5 ticks per CPU at 100 Hz)
_AUTO_STALE_S = 5.0  # an older window is replaced by a fresh one at open
_OPEN_WATCH: OtherLoad | None = None  # the window since the previous open (or since the first)
log = logging.getLogger("edgerun")

# ORT session config entries per mode (keys from onnxruntime's session_options_config_keys.h).
_SPIN_CONFIG = {
    "off": {"session.intra_op.allow_spinning": "0"},
    "on": {"session.intra_op.allow_spinning": "1"},
    "stop": {"session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "1"},
}

_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
    "tensor(double)": np.float64, "tensor(bool)": np.bool_,
}


class ModelError(EdgerunError, ValueError):
    """The model file is missing, unreadable, hostile or not usable by edgerun; ``reason`` holds the
    cause without the file name when the message wraps one (e.g. why H/W cannot be made symbolic)."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason if reason is not None else message


def spin_mode(spin: bool | str | None) -> str:
    """The spin mode named by ``spin``: ``None`` -> ``DEFAULT_SPIN``, ``False`` -> ``"off"``,
    ``True`` -> ``"on"``, or one of ``SPIN_MODES`` as a string."""
    if spin is None:
        return DEFAULT_SPIN
    if isinstance(spin, (bool, np.bool_)):
        return "on" if spin else "off"
    if not isinstance(spin, str):
        raise EdgerunTypeError(f"spin: expected a str, bool or None, got {type(spin).__name__} {spin!r}")
    if spin.lower() in SPIN_MODES:
        return spin.lower()
    raise EdgerunValueError(f"spin: expected one of {list(SPIN_MODES)}, True, False or None (the default "
                            f"{DEFAULT_SPIN!r}), got {spin!r}")


def spin_config(spin: bool | str | None) -> dict[str, str]:
    """ORT session config entries for a fixed mode (see ``spin_mode``; ``"auto"`` is resolved by the
    session, see ``Session.spin_active``); inter-op spinning is always off."""
    mode = spin_mode(spin)
    if mode == "auto":
        raise EdgerunValueError('spin_config: "auto" is not an ORT setting; pass the mode it chose '
                                "(Session.spin_active)")
    return {**_SPIN_CONFIG[mode], "session.inter_op.allow_spinning": "0"}


def _other_load_at_open() -> tuple[float | None, int]:
    """(cores other processes used over the last window, CPUs): the window since the previous
    open when it is at least ``_AUTO_OPEN_S`` and at most ``_AUTO_STALE_S`` old, else a fresh one."""
    global _OPEN_WATCH
    watch = _OPEN_WATCH
    if watch is None or watch.seconds_since_sample() > _AUTO_STALE_S:
        watch = _OPEN_WATCH = OtherLoad()
    import onnxruntime  # noqa: F401 - the first import in a process (~0.1 s) fills the window
    wait = _AUTO_OPEN_S - watch.seconds_since_sample()
    if wait > 0:
        time.sleep(wait)
    return watch.sample(), watch.cpus


SYSFS_CPU = "/sys/devices/system/cpu"
CLUSTER_TOLERANCE = 0.9  # a CPU within 10% of a cluster's fastest CPU belongs to that cluster


@dataclass(frozen=True)
class CpuClusters:
    """The CPUs this process may run on, grouped by speed (fastest cluster first).

    ``source`` names what the speeds were read from: ``"cpu_capacity"`` (the kernel's per-CPU
    capacity, 1024 = the fastest core), ``"cpuinfo_max_freq"`` (kHz) or ``""`` when neither is
    readable for every CPU, in which case the set is taken as uniform (one cluster)."""

    cpus: tuple[int, ...]
    clusters: tuple[tuple[int, tuple[int, ...]], ...]  # (speed of its fastest CPU, its CPUs)
    source: str = ""

    @property
    def heterogeneous(self) -> bool:
        return len(self.clusters) > 1

    @property
    def big(self) -> tuple[int, ...]:
        """The fastest cluster's CPUs (all CPUs on a uniform set)."""
        return self.clusters[0][1] if self.heterogeneous else self.cpus

    def describe(self) -> str:
        """One line for ``edgerun --version``: the clusters and the default thread choice."""
        if not self.heterogeneous:
            what = f"{len(self.cpus)} CPUs, uniform" + (f" ({self.source})" if self.source else "")
            return f"{what}: {len(self.cpus)} threads"
        parts = ", ".join(f"{len(c)}x {speed} [{_cpu_list(c)}]" for speed, c in self.clusters)
        return (f"{len(self.cpus)} CPUs in {len(self.clusters)} clusters by {self.source} ({parts}): "
                f"{len(self.big)} threads pinned to CPUs {_cpu_list(self.big)}")


def _cpu_list(cpus: Sequence[int]) -> str:
    return ",".join(map(str, cpus))


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            value = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return value if value > 0 else None


def allowed_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on (its affinity mask; every CPU where there is none)."""
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return tuple(range(os.cpu_count() or 1))


def cpu_clusters(root: str | None = None, cpus: Sequence[int] | None = None) -> CpuClusters:
    """Group ``cpus`` (default: ``allowed_cpus()``) by speed read under ``root`` (a sysfs CPU
    folder): each CPU's ``cpu_capacity``, else its ``cpufreq/cpuinfo_max_freq``. A source is used
    only when it is readable for every CPU; with neither, the set is uniform."""
    root = root or SYSFS_CPU
    cpus = tuple(sorted(set(allowed_cpus() if cpus is None else cpus)))
    for source, rel in (("cpu_capacity", "cpu_capacity"), ("cpuinfo_max_freq", "cpufreq/cpuinfo_max_freq")):
        speeds = {c: _read_int(os.path.join(root, f"cpu{c}", rel)) for c in cpus}
        if cpus and all(v is not None for v in speeds.values()):
            break
    else:
        return CpuClusters(cpus, ((0, cpus),), "")
    clusters: list[tuple[int, list[int]]] = []
    for c in sorted(cpus, key=lambda c: (-speeds[c], c)):
        if clusters and speeds[c] >= CLUSTER_TOLERANCE * clusters[-1][0]:
            clusters[-1][1].append(c)
        else:
            clusters.append((speeds[c], [c]))
    return CpuClusters(cpus, tuple((s, tuple(sorted(cs))) for s, cs in clusters), source)


def _env_threads() -> int | None:
    env = os.environ.get("EDGERUN_THREADS")
    if not env:
        return None
    try:
        n = int(env)
    except ValueError:
        raise EdgerunValueError(f"EDGERUN_THREADS: expected a positive integer, got {env!r}") from None
    if n > 0:
        return n
    raise EdgerunValueError(f"EDGERUN_THREADS: expected a positive integer, got {env!r}")


def cpu_budget(root: str | None = None, cpus: Sequence[int] | None = None) -> int:
    """CPUs edgerun may use: ``$EDGERUN_THREADS`` if set, else the fastest cluster of the CPUs this
    process may run on (all of them on a uniform set; see ``cpu_clusters``)."""
    n = _env_threads()
    return n if n is not None else len(cpu_clusters(root, cpus).big)


def thread_affinities(threads: int, clusters: CpuClusters) -> str | None:
    """ORT's ``session.intra_op_thread_affinities`` for ``threads`` intra-op threads on the fastest
    cluster: one entry per pool thread (``threads - 1``: ORT never pins the caller's thread), each the
    whole cluster as 1-based logical processor ids, ``;``-separated. None on a uniform set or with
    a single thread (nothing to pin)."""
    if not clusters.heterogeneous or threads <= 1:
        return None
    cluster = ",".join(str(c + 1) for c in clusters.big)
    return ";".join([cluster] * (threads - 1))


def use_big_cores(root: str | None = None) -> tuple[int, ...] | None:
    """Pin the calling thread, and every thread it starts afterwards (ORT's pools and stream stage
    threads included, when started later), to the fastest cluster. edgerun's Numba kernels are serial
    (none is ``parallel=True``): they run on the thread that calls them, so this puts them on the big
    cores too, and Numba's own pool never starts. Does nothing on a uniform CPU set or when
    ``$EDGERUN_THREADS`` is set. Returns the CPUs pinned to, or None. The ``edgerun`` command calls it
    first thing (unless ``--threads`` is given); a library user calls it only if the whole program
    should stay on the big cores (it changes the caller thread's affinity)."""
    if _env_threads() is not None:
        return None
    clusters = cpu_clusters(root)
    if not clusters.heterogeneous:
        return None
    try:
        os.sched_setaffinity(0, clusters.big)
    except OSError as exc:
        log.info("edgerun: cannot pin to the big cores %s (%s)", clusters.big, exc)
        return None
    return clusters.big


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple  # ints, or str/None for symbolic axes
    dtype: type

    @property
    def static(self) -> bool:
        return all(isinstance(d, int) and d > 0 for d in self.shape)


def check_model_file(path: str) -> str:
    """Refuse what must never reach ORT: missing/empty files, and external data outside the folder."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelError(f"model file not found: {path}")
    if not os.path.isfile(path):
        raise ModelError(f"model path is not a file: {path}")
    size = os.path.getsize(path)
    if size == 0:
        raise ModelError(f"model file is empty (0 bytes): {path}")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror}") from None
    if b"location" in raw:  # protobuf stores the external-data key verbatim: a sound pre-filter
        _check_external_data(path)
    return path


def _check_external_data(path: str) -> None:
    import onnx  # only for models that may reference external data
    from onnx.external_data_helper import ExternalDataInfo

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad model file
        raise ModelError(f"not a valid ONNX model: {path} ({type(exc).__name__}: {exc})") from None
    base = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    for tensor in _external_tensors(model):
        loc = ExternalDataInfo(tensor).location
        target = os.path.realpath(os.path.join(base, loc))
        if os.path.isabs(loc) or os.path.commonpath([base, target]) != base:
            raise ModelError(f"refusing model {path}: tensor {tensor.name!r} points its external data "
                             f"outside the model's folder ({loc!r})")
        if not os.path.isfile(target):
            raise ModelError(f"model {path}: external data file {loc!r} for tensor {tensor.name!r} "
                             "is missing")


def _external_tensors(model):
    """Every TensorProto with external data, wherever the model stores one: initializers, node
    attributes, subgraphs, sparse tensors, functions, training info (a generic protobuf walk)."""
    from google.protobuf.message import Message
    from onnx import TensorProto

    stack = [model]
    while stack:
        msg = stack.pop()
        if isinstance(msg, TensorProto) and msg.data_location == TensorProto.EXTERNAL:
            yield msg
        for field, value in msg.ListFields():
            if field.message_type is not None:
                stack.extend([value] if isinstance(value, Message) else value)


_MAX_ELEMENTS = 2**28  # per static input/output tensor: 1 GiB of float32


def _check_shapes(path: str, tensors: Sequence[TensorInfo]) -> None:
    """Refuse absurd static shapes at load time, before any buffer is allocated for them."""
    for t in tensors:
        n = float(np.prod([d for d in t.shape if isinstance(d, int) and d > 0], dtype=np.float64))
        if n > _MAX_ELEMENTS:
            raise ModelError(f"{path}: tensor {t.name!r} declares shape {list(t.shape)} ({n:.3g} elements, "
                             f"over edgerun's limit of {_MAX_ELEMENTS}); not a model edgerun can run")


def _ort_reason(exc: Exception) -> str:
    """ORT's load error without its C++ source locations and function signatures."""
    import re

    text = str(exc).strip()
    msg = text.splitlines()[0] if text else type(exc).__name__
    return re.sub(r"/onnxruntime_src/\S+:\d+ (\S[^(]*\((?:[^()]|\([^()]*\))*\) )?", "", msg)


class Session:
    """An ONNX Runtime session configured for edge CPUs. ``run`` is thread-safe.

    ``spin``: ``"auto"``, ``"off"``, ``"on"``, ``"stop"`` (spin inside ``run`` only), ``True``
    (= ``"on"``), ``False`` (= ``"off"``) or ``None`` for ``DEFAULT_SPIN``; ``self.spin`` holds the
    mode asked for, ``self.spin_active`` the one ORT runs with (``"auto"``'s current choice).
    """

    def __init__(self, path: str, *, threads: int | None = None, spin: bool | str | None = None,
                 providers: Sequence[str] | None = None, optimization: str = "all",
                 bind_outputs: bool = True, symbolic_hw: bool = False):
        self.path = check_model_file(path)
        self._args = dict(threads=threads, spin=spin, providers=providers, optimization=optimization,
                          bind_outputs=bind_outputs)
        self.symbolic_hw = bool(symbolic_hw)
        model = _symbolic_hw_bytes(self.path) if symbolic_hw else self.path
        chosen = threads or _env_threads()
        clusters = None if chosen else cpu_clusters()
        self.threads = chosen or len(clusters.big)
        # Heterogeneous CPUs, nothing chosen: ORT's pool threads stay on the fastest cluster.
        self.affinities = None if chosen else thread_affinities(self.threads, clusters)
        self.spin = spin_mode(spin)
        self._auto: _AutoSpin | None = None
        if self.spin == "auto" and self.threads <= 1:
            self.spin_active = "off"  # no intra-op pool: nothing to spin, nothing to measure
        elif self.spin == "auto":
            others, cpus = _other_load_at_open()
            self.spin_active = auto_spin(others, self.threads, cpus)
            if others is not None:
                self._auto = _AutoSpin(self.threads, cpus)
        else:
            self.spin_active = self.spin
        self._model, self._providers = model, providers
        self._sess = self._open(self.spin_active)
        self.inputs = tuple(_info(i) for i in self._sess.get_inputs())
        self.outputs = tuple(_info(o) for o in self._sess.get_outputs())
        _check_shapes(self.path, self.inputs + self.outputs)
        self.metadata = dict(self._sess.get_modelmeta().custom_metadata_map)
        self._bind = bind_outputs and all(o.static for o in self.outputs)
        self._local = threading.local()
        if self._auto is None:
            self._model = None  # only a reopen needs it (symbolic-H/W bytes can be large)

    def _open(self, mode: str):
        """An ORT InferenceSession with this session's options and ORT spin mode ``mode``."""
        import onnxruntime as ort

        providers, optimization = self._providers, self._args["optimization"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # No memory pattern: ORT plans one block for the whole run on top of the arena's chunks. Off,
        # yolov8n 640 fp32 peaks 24 MB lower (270 -> 246 MB after two detects, runtime-only venv) at the
        # same speed (paired runs, 2-core AVX2 EPYC: off/on 0.987 at 640 fp32, 0.984 at 320 int8).
        opts.enable_mem_pattern = False
        levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        if optimization not in levels:
            raise EdgerunValueError(f"optimization: expected one of {list(levels)}, got {optimization!r}")
        opts.graph_optimization_level = levels[optimization]
        for key, value in spin_config(mode).items():
            opts.add_session_config_entry(key, value)
        if self.affinities:
            opts.add_session_config_entry("session.intra_op_thread_affinities", self.affinities)
        opts.log_severity_level = 3
        available = ort.get_available_providers()
        providers = list(providers or ["CPUExecutionProvider"])
        missing = [p for p in providers if p not in available]
        if missing:
            raise EdgerunValueError(f"providers {missing} are not available in this onnxruntime; "
                                    f"available: {available}")
        try:
            return ort.InferenceSession(self._model, opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises several types; all mean a bad model
            raise ModelError(f"onnxruntime cannot load {self.path}: {_ort_reason(exc)}") from None

    def _switch(self, mode: str, others: float) -> None:
        """``spin="auto"``: rebuild the ORT session with ``mode`` (background thread), then swap it in;
        ``run`` calls in flight finish on the old one. A failure stops the adapting, never a run."""
        try:
            sess = self._open(mode)
        except Exception as exc:  # noqa: BLE001 - keep the working session
            log.warning("edgerun: spin auto: reopening %s with spin %r failed (%s); staying at %r",
                        self.path, mode, exc, self.spin_active)
            self._auto = None
            return
        auto = self._auto
        self._sess, self.spin_active = sess, mode
        auto.switched(mode)
        log.info("edgerun: spin auto: %s now runs with spin %r (other processes used %.2f of %d cores)",
                 os.path.basename(self.path), mode, others, auto.cpus)

    def with_symbolic_hw(self) -> "Session":
        """This model reopened with its input's H/W axes symbolic (same options), so it runs at any
        size. Raises ``ModelError`` naming the reason when the graph depends on its fixed size."""
        shape = self.inputs[0].shape if self.inputs else ()
        if self.symbolic_hw or (len(shape) == 4 and sum(d is None for d in shape[1:]) >= 2):
            return self  # already symbolic (reopened, or exported with dynamic H/W)
        return Session(self.path, **self._args, symbolic_hw=True)

    def run(self, feed: np.ndarray | dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the model. A single array feeds the first input. Returned arrays may be reused
        buffers (overwritten by this thread's next ``run``): copy what you keep."""
        auto = self._auto
        if auto is not None and time.monotonic() >= auto.next_check:
            mode = auto.check(self.spin_active)
            if mode is not None:
                threading.Thread(target=self._switch, args=(mode, auto.others), daemon=True,
                                 name="edgerun-spin-auto").start()
        if isinstance(feed, np.ndarray):
            feed = {self.inputs[0].name: feed}
        if not self._bind or len(feed) != 1:
            return self._sess.run(None, feed)
        return self._run_bound(feed)

    def _run_bound(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        (name, x), = feed.items()
        x = np.ascontiguousarray(x)
        sess = self._sess
        ws = getattr(self._local, "ws", None)
        if ws is None or ws[0] is not sess:  # first run on this thread, or spin="auto" reopened
            outs = ws[2] if ws is not None else [np.empty(o.shape, o.dtype) for o in self.outputs]
            binding = sess.io_binding()
            for o, buf in zip(self.outputs, outs):
                binding.bind_output(o.name, "cpu", 0, buf.dtype, buf.shape, buf.ctypes.data)
            ws = self._local.ws = (sess, binding, outs)
        _, binding, outs = ws
        binding.bind_input(name, "cpu", 0, x.dtype, x.shape, x.ctypes.data)
        sess.run_with_iobinding(binding)
        return outs

    def __repr__(self) -> str:
        active = f" (now {self.spin_active!r})" if self.spin == "auto" else ""
        return f"Session({self.path!r}, threads={self.threads}, spin={self.spin!r}{active})"


class _AutoSpin:
    """``spin="auto"``'s re-check: every ``AUTO_CHECK_S`` of runs, the other processes' load since the
    last check; a different answer from ``auto_spin`` twice in a row asks for a switch (once at a time)."""

    def __init__(self, threads: int, cpus: int) -> None:
        self.threads, self.cpus = threads, cpus
        self.load = OtherLoad()
        self.next_check = time.monotonic() + AUTO_CHECK_S
        self.others = 0.0
        self.switches = 0
        self._votes = 0
        self._busy = False

    def check(self, current: str) -> str | None:
        """The mode to switch to now, or None."""
        self.next_check = time.monotonic() + AUTO_CHECK_S
        others = self.load.sample()
        if others is None or self._busy:
            return None
        self.others = others
        want = auto_spin(others, self.threads, self.cpus, current)
        self._votes = self._votes + 1 if want != current else 0
        if self._votes < 2:
            return None
        self._votes, self._busy = 0, True
        return want

    def switched(self, mode: str) -> None:
        self.switches += 1
        self._busy = False


def _info(arg) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) else None for d in (arg.shape or ()))
    dtype = _ORT_DTYPES.get(arg.type)
    if dtype is None:
        raise ModelError(f"tensor {arg.name!r} has unsupported type {arg.type}")
    return TensorInfo(arg.name, shape, dtype)


def _symbolic_hw_bytes(path: str) -> bytes:
    from .graph import NotSymbolic, symbolic_model

    try:
        return symbolic_model(path).SerializeToString()
    except NotSymbolic as exc:
        raise ModelError(f"{path}: the input size is fixed in the graph and cannot be made symbolic: "
                         f"{exc}", reason=str(exc)) from None
