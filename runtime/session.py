"""A thin ONNX Runtime wrapper for edge CPUs.

- One CPU budget (``cpu_budget()``) shared by ORT's intra-op threads and Numba's kernels.
- ORT spin-waiting is a per-use choice (``spin=``, one of ``SPIN_MODES``): ``"off"`` parks the
  intra-op threads as soon as they run out of work; ``"on"`` lets them spin-wait, which makes a
  tight loop of ``run()`` faster but keeps burning the cores after ``run()`` returns and slows
  whatever runs next (our kernels, other pipeline stages, the host application); ``"stop"`` spins
  inside ``run()`` and stops the threads the moment the last concurrent ``run()`` returns (ORT's
  ``session.force_spinning_stop``). ``spin=None`` means ``DEFAULT_SPIN`` (``Session``,
  ``Detector.from_path``); see the README ("Threads and spinning") for the measurements behind it.
- Model files are checked before ORT sees them: missing/empty/unreadable files and ONNX external-data
  references that leave the model's folder are refused with a clear error.
- Static output shapes are preallocated and bound (IOBinding), so steady-state runs allocate nothing.
- A fully convolutional graph exported with a fixed input size can be reopened with symbolic H/W
  (``Session.with_symbolic_hw``, checked by ``symbolic_hw_problem``) to run at any size.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from edgerun.kernels.errors import EdgerunError, EdgerunTypeError, EdgerunValueError

__all__ = ["Session", "ModelError", "cpu_budget", "TensorInfo", "SPIN_MODES", "DEFAULT_SPIN", "spin_mode",
           "spin_config", "symbolic_hw_problem"]

SPIN_MODES = ("off", "on", "stop")
# The spin policy of every session whose caller does not choose one (``spin=None``). Changing the
# default means changing this line only; benchmarks/bench_peers.py measures the three modes.
DEFAULT_SPIN = "off"

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
    """The model file is missing, unreadable, hostile or not usable by edgerun."""


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
    """ORT session config entries for ``spin`` (see ``spin_mode``); inter-op spinning is always off."""
    return {**_SPIN_CONFIG[spin_mode(spin)], "session.inter_op.allow_spinning": "0"}


def cpu_budget() -> int:
    """CPUs edgerun may use: ``$EDGERUN_THREADS`` if set, else the CPUs this process may run on."""
    env = os.environ.get("EDGERUN_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise EdgerunValueError(f"EDGERUN_THREADS: expected a positive integer, got {env!r}") from None
        if n > 0:
            return n
        raise EdgerunValueError(f"EDGERUN_THREADS: expected a positive integer, got {env!r}")
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


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

    ``spin``: ``"off"``, ``"on"``, ``"stop"`` (spin inside ``run`` only), ``True`` (= ``"on"``),
    ``False`` (= ``"off"``) or ``None`` for ``DEFAULT_SPIN``; ``self.spin`` holds the mode string.
    """

    def __init__(self, path: str, *, threads: int | None = None, spin: bool | str | None = None,
                 providers: Sequence[str] | None = None, optimization: str = "all",
                 bind_outputs: bool = True, symbolic_hw: bool = False):
        import onnxruntime as ort

        self.path = check_model_file(path)
        self._args = dict(threads=threads, spin=spin, providers=providers, optimization=optimization,
                          bind_outputs=bind_outputs)
        self.symbolic_hw = bool(symbolic_hw)
        model = _symbolic_hw_bytes(self.path) if symbolic_hw else self.path
        self.threads = threads or cpu_budget()
        self.spin = spin_mode(spin)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        if optimization not in levels:
            raise EdgerunValueError(f"optimization: expected one of {list(levels)}, got {optimization!r}")
        opts.graph_optimization_level = levels[optimization]
        for key, value in spin_config(self.spin).items():
            opts.add_session_config_entry(key, value)
        opts.log_severity_level = 3
        available = ort.get_available_providers()
        providers = list(providers or ["CPUExecutionProvider"])
        missing = [p for p in providers if p not in available]
        if missing:
            raise EdgerunValueError(f"providers {missing} are not available in this onnxruntime; "
                                    f"available: {available}")
        try:
            self._sess = ort.InferenceSession(model, opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises several types; all mean a bad model
            raise ModelError(f"onnxruntime cannot load {self.path}: {_ort_reason(exc)}") from None
        self.inputs = tuple(_info(i) for i in self._sess.get_inputs())
        self.outputs = tuple(_info(o) for o in self._sess.get_outputs())
        _check_shapes(self.path, self.inputs + self.outputs)
        self.metadata = dict(self._sess.get_modelmeta().custom_metadata_map)
        self._bind = bind_outputs and all(o.static for o in self.outputs)
        self._local = threading.local()

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
        if isinstance(feed, np.ndarray):
            feed = {self.inputs[0].name: feed}
        if not self._bind or len(feed) != 1:
            return self._sess.run(None, feed)
        return self._run_bound(feed)

    def _run_bound(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        (name, x), = feed.items()
        x = np.ascontiguousarray(x)
        ws = getattr(self._local, "ws", None)
        if ws is None:
            outs = [np.empty(o.shape, o.dtype) for o in self.outputs]
            binding = self._sess.io_binding()
            for o, buf in zip(self.outputs, outs):
                binding.bind_output(o.name, "cpu", 0, buf.dtype, buf.shape, buf.ctypes.data)
            ws = self._local.ws = (binding, outs)
        binding, outs = ws
        binding.bind_input(name, "cpu", 0, x.dtype, x.shape, x.ctypes.data)
        self._sess.run_with_iobinding(binding)
        return outs

    def __repr__(self) -> str:
        return f"Session({self.path!r}, threads={self.threads}, spin={self.spin!r})"


def _info(arg) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) else None for d in (arg.shape or ()))
    dtype = _ORT_DTYPES.get(arg.type)
    if dtype is None:
        raise ModelError(f"tensor {arg.name!r} has unsupported type {arg.type}")
    return TensorInfo(arg.name, shape, dtype)


# ------------------------------------------------------------------ symbolic H/W (fixed-size exports)
_SIZE_OPS = ("Reshape", "Expand", "Tile", "ConstantOfShape")  # ops whose constant input fixes an output shape


def _hw_axes(inp) -> tuple[int, int]:
    dims = inp.type.tensor_type.shape.dim
    nhwc = len(dims) == 4 and dims[3].dim_value in (1, 3) and dims[1].dim_value not in (1, 3)
    return (1, 2) if nhwc else (2, 3)


def _make_symbolic(model) -> None:
    """In place: input H/W -> dim_params "height"/"width"; stored intermediate/output shapes dropped."""
    inp = model.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    for axis, name in zip(_hw_axes(inp), ("height", "width")):
        dims[axis].Clear()
        dims[axis].dim_param = name
    del model.graph.value_info[:]
    for out in model.graph.output:
        for d in out.type.tensor_type.shape.dim:
            if d.HasField("dim_value") and d.dim_value != 1:
                d.Clear()


def _constants(model) -> dict:
    from onnx import numpy_helper

    out = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            out[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return out


def _shapes(model) -> dict:
    """Tensor name -> tuple of dims (int, or str for symbolic/unknown) after shape inference."""
    g = model.graph
    out = {}
    for v in list(g.input) + list(g.value_info) + list(g.output):
        t = v.type.tensor_type
        if t.HasField("shape"):
            out[v.name] = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                                for d in t.shape.dim)
    return out


_MIXING_OPS = ("Add", "Sub", "Mul", "Div", "Concat", "Where", "Sum", "Max", "Min")


def _mixed_sizes(node, shapes) -> str | None:
    """A fixed axis (> 1) meeting a size-dependent one in an elementwise op or a Concat: a constant
    spanning the feature map (YOLO anchor grids) or a branch resized to a fixed size."""
    known = [tuple(s) for s in shapes if s is not None]
    rank = max((len(s) for s in known), default=0)
    skip = None
    if node.op_type == "Concat":
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        skip = axis % rank if rank else None
    for k in range(1, rank + 1):
        if rank - k == skip:
            continue
        dims = [s[-k] for s in known if len(s) >= k]
        fixed = [d for d in dims if isinstance(d, (int, np.integer)) and d > 1]
        if fixed and any(not isinstance(d, (int, np.integer)) for d in dims):
            return (f"{node.op_type} {node.name!r} meets a size-dependent axis with a fixed one of {fixed[0]} "
                    "(a constant or branch tied to the input size, e.g. anchor grids)")
    return None


def _resize_scales(node, consts) -> list[float] | None:
    """The constant spatial scales of a Resize (input 2) or Upsample (input 1), else None."""
    i = {"Resize": 2, "Upsample": 1}.get(node.op_type)
    if i is None or len(node.input) <= i or node.input[i] not in consts:
        return None
    v = np.asarray(consts[node.input[i]], np.float64).ravel()
    return [float(x) for x in v[2:]] if v.size > 2 else None


def _fixed_window(node) -> bool:
    """A pooling window larger than 7 that shrinks the map (not SPP's stride-1 'same' pooling): a
    global pool written as a fixed kernel."""
    attr = {a.name: a for a in node.attribute}
    kernel = list(attr["kernel_shape"].ints) if "kernel_shape" in attr else []
    if max(kernel, default=0) <= 7:
        return False
    strides = list(attr["strides"].ints) if "strides" in attr else [1] * len(kernel)
    pads = list(attr["pads"].ints) if "pads" in attr else [0] * 2 * len(kernel)
    auto = attr["auto_pad"].s.decode() if "auto_pad" in attr else "NOTSET"
    same = all(s == 1 for s in strides) and (auto.startswith("SAME") or all(
        pads[i] + pads[i + len(kernel)] == k - 1 for i, k in enumerate(kernel)))
    return not same


def _power_of_two(v: float) -> bool:
    return v > 0 and float(np.log2(v)).is_integer()


def _size_dependence(model) -> str | None:
    """The first node that bakes the fixed input size into a constant, named, or None."""
    consts, shapes = _constants(model), _shapes(model)
    for n in model.graph.node:
        data = shapes.get(n.input[0]) if n.input else None
        varying = data is not None and any(not isinstance(d, int) for d in data)
        if n.op_type in _SIZE_OPS and len(n.input) > 1 and n.input[1] in consts and varying:
            target = [int(v) for v in np.asarray(consts[n.input[1]]).ravel()]
            free = n.op_type == "Reshape" and (-1 in target or 0 in target)  # an axis left to the data
            if not free:
                return f"{n.op_type} {n.name!r} has a constant target shape {target}"
        if n.op_type == "Resize" and len(n.input) > 3 and n.input[3] in consts and varying:
            return f"Resize {n.name!r} has constant output sizes {np.asarray(consts[n.input[3]]).tolist()}"
        scales = _resize_scales(n, consts)
        if varying and scales is not None and any(v != 1 and not _power_of_two(v) for v in scales):
            return (f"{n.op_type} {n.name!r} scales by {scales}, a factor fitted to the fixed size "
                    "(feature pyramids scale by powers of two)")
        if n.op_type in ("AveragePool", "MaxPool") and varying and _fixed_window(n):
            return f"{n.op_type} {n.name!r} pools a fixed large window (global pooling tied to the input size)"
        if n.op_type in _MIXING_OPS:
            problem = _mixed_sizes(n, [consts[i].shape if i in consts else shapes.get(i) for i in n.input])
            if problem:
                return problem
    return None


def symbolic_hw_problem(path: str) -> str | None:
    """Why this model's fixed input H/W cannot be made symbolic, or None when it can: the input is
    4-D with static H/W, ONNX shape inference succeeds (strict) with H/W symbolic, and no node bakes
    the size into a constant (a Reshape/Expand/Tile target without a free axis, a Resize to fixed
    sizes, an elementwise op with a constant spanning the feature map such as YOLO anchor grids)."""
    try:
        _symbolic_model(path)
    except _NotSymbolic as exc:
        return str(exc)
    return None


class _NotSymbolic(Exception):
    pass


def _symbolic_model(path: str):
    import onnx

    model = onnx.load(path)
    if not model.graph.input:
        raise _NotSymbolic("the graph has no input")
    inp = model.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise _NotSymbolic(f"input {inp.name!r} is not a 4-D image tensor")
    if not all(dims[a].HasField("dim_value") for a in _hw_axes(inp)):
        raise _NotSymbolic(f"input {inp.name!r} already has symbolic H/W")
    _make_symbolic(model)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises InferenceError, ValidationError, ...
        raise _NotSymbolic(f"ONNX shape inference fails with symbolic H/W: {str(exc).splitlines()[0]}") from None
    problem = _size_dependence(model)
    if problem:
        raise _NotSymbolic(problem)
    return model


def _symbolic_hw_bytes(path: str) -> bytes:
    try:
        return _symbolic_model(path).SerializeToString()
    except _NotSymbolic as exc:
        raise ModelError(f"{path}: the input size is fixed in the graph and cannot be made symbolic: "
                         f"{exc}") from None
