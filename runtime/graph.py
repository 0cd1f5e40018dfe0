"""Can a fixed-size graph run at other input sizes? Symbolic H/W for fully convolutional exports.

``symbolic_hw_problem(path)`` says why not (or None); ``symbolic_model(path)`` returns the ONNX model
with its input H/W made symbolic after checking that ONNX shape inference succeeds and no node bakes
the size into a constant. Used by ``Session(symbolic_hw=True)`` (native-resolution faces) and the
open-time check of ``input_size`` overrides (``spec.fit_input_size``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["symbolic_hw_problem", "symbolic_model", "NotSymbolic"]

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
        symbolic_model(path)
    except NotSymbolic as exc:
        return str(exc)
    return None


class NotSymbolic(Exception):
    """Why a fixed-size graph cannot take other input sizes (the message says which node)."""


def symbolic_model(path: str):
    import onnx

    model = onnx.load(path)
    if not model.graph.input:
        raise NotSymbolic("the graph has no input")
    inp = model.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise NotSymbolic(f"input {inp.name!r} is not a 4-D image tensor")
    if not all(dims[a].HasField("dim_value") for a in _hw_axes(inp)):
        raise NotSymbolic(f"input {inp.name!r} already has symbolic H/W")
    _make_symbolic(model)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises InferenceError, ValidationError, ...
        raise NotSymbolic(f"ONNX shape inference fails with symbolic H/W: {str(exc).splitlines()[0]}") from None
    problem = _size_dependence(model)
    if problem:
        raise NotSymbolic(problem)
    return model
