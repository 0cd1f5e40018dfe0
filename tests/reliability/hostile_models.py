"""Generated hostile and broken ONNX models (onnx.helper), each in its own folder.

``make_models(root)`` returns ``[(category, path)]``; every one must be refused by edgerun.
External-data models point at ``root/outside/secret.bin``: a sentinel file of exactly the size
the weight needs, so a model that slipped past edgerun's pre-check would load "fine".
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

N_ANCHORS = 256  # 16 x 16 cells of a 128 x 128 input: more anchors than rows, as YOLOv8
W_SHAPE = (84, 3, 8, 8)
SENTINEL = b"EDGERUN-SENTINEL"


def _weight() -> np.ndarray:
    return np.random.default_rng(0).standard_normal(W_SHAPE).astype(np.float32) * 0.01


def detector_graph(*, w: TensorProto | None = None, in_type: int = TensorProto.FLOAT,
                   in_shape=(1, 3, 128, 128), out_shape=(1, 84, N_ANCHORS), opset: int = 17,
                   extra_nodes=(), weight_in_graph: bool = True) -> onnx.ModelProto:
    """A tiny valid YOLOv8-shaped detector: Conv 8x8/8 -> Reshape (1, 84, 256)."""
    w = numpy_helper.from_array(_weight(), "W") if w is None else w
    shape = numpy_helper.from_array(np.array([1, 84, N_ANCHORS], np.int64), "shape")
    nodes = [helper.make_node("Conv", ["images", "W"], ["f"], kernel_shape=[8, 8], strides=[8, 8]),
             helper.make_node("Reshape", ["f", "shape"], ["output0"]), *extra_nodes]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("images", in_type, list(in_shape))],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(out_shape))],
                              initializer=[shape] + ([w] if weight_in_graph else []))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _external(name: str, location: str, offset: int = 0, length: int | None = None) -> TensorProto:
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(W_SHAPE),
                    data_location=TensorProto.EXTERNAL)
    entries = {"location": location, "offset": str(offset)}
    if length is not None:
        entries["length"] = str(length)
    for k, v in entries.items():
        t.external_data.add(key=k, value=v)
    return t


def _save(model: onnx.ModelProto, folder: Path, name: str = "model.onnx") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(model.SerializeToString())
    return path


def _sentinel(root: Path) -> Path:
    out = root / "outside"
    out.mkdir(parents=True, exist_ok=True)
    p = out / "secret.bin"
    nbytes = int(np.prod(W_SHAPE)) * 4
    p.write_bytes((SENTINEL * (nbytes // len(SENTINEL) + 1))[:nbytes])
    return p


def _escape_locations(root: Path, folder: Path, secret: Path) -> list[tuple[str, str]]:
    """(kind, location) pairs that all resolve to the sentinel outside ``folder``."""
    rel = os.path.relpath(secret, folder)
    return [("relative", rel), ("absolute", str(secret)), ("dotdot_inside", "sub/../" + rel),
            ("dot_prefix", "./" + rel), ("double_slash", "sub//../" + rel),
            ("symlink", "link.bin"), ("symlink_dir", "linkdir/secret.bin")]


def _place_tensor(kind: str, t: TensorProto) -> onnx.ModelProto:
    """The external tensor as the Conv weight, a Constant attribute, a subgraph or a sparse value."""
    if kind == "initializer":
        return detector_graph(w=t)
    if kind == "constant":
        return _with_constant(t)
    if kind == "sparse":
        m = detector_graph()
        sp = m.graph.sparse_initializer.add()
        sp.values.CopyFrom(t)
        sp.values.name = "S"
        sp.values.dims[:] = [4]
        sp.indices.CopyFrom(numpy_helper.from_array(np.arange(4, dtype=np.int64), "S_idx"))
        sp.dims[:] = [16]
        return m
    return _with_subgraph(t)


def _with_constant(t: TensorProto) -> onnx.ModelProto:
    m = detector_graph(weight_in_graph=False)
    m.graph.node.insert(0, helper.make_node("Constant", [], ["W"], value=t))
    return m


def _with_subgraph(t: TensorProto) -> onnx.ModelProto:
    """W comes out of an If whose branches hold the external tensor as a Constant."""
    def branch(name: str) -> onnx.GraphProto:
        node = helper.make_node("Constant", [], [f"w_{name}"], value=t)
        return helper.make_graph([node], name, [], [helper.make_tensor_value_info(f"w_{name}", TensorProto.FLOAT,
                                                                                  list(W_SHAPE))])
    cond = numpy_helper.from_array(np.array(True), "cond")
    m = detector_graph(weight_in_graph=False)
    m.graph.initializer.append(cond)
    m.graph.node.insert(0, helper.make_node("If", ["cond"], ["W"], then_branch=branch("a"), else_branch=branch("b")))
    return m


def external_escapes(root: Path) -> list[tuple[str, Path]]:
    secret = _sentinel(root)
    out = []
    for place in ("initializer", "constant", "subgraph", "sparse"):
        for kind, loc in _escape_locations(root, root / "x" / "y", secret):
            folder = root / f"ext_{place}_{kind}" / "y"
            folder.mkdir(parents=True, exist_ok=True)
            os.symlink(secret, folder / "link.bin")
            os.symlink(secret.parent, folder / "linkdir")
            (folder / "sub").mkdir()
            loc = os.path.relpath(secret, folder) if kind == "relative" else loc
            out.append((f"external_outside/{place}/{kind}", _save(_place_tensor(place, _external("W", loc)), folder)))
    return out


def external_missing(root: Path) -> list[tuple[str, Path]]:
    out = []
    for i, loc in enumerate(("weights.bin", "sub/weights.bin", "", ".", "sub")):
        folder = root / f"ext_missing_{i}"
        (folder / "sub").mkdir(parents=True)
        out.append(("external_missing", _save(detector_graph(w=_external("W", loc)), folder)))
    folder = root / "ext_short"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"\0" * 100)
    out.append(("external_too_short", _save(detector_graph(w=_external("W", "w.bin")), folder)))
    out.append(("external_bad_offset", _save(detector_graph(w=_external("W", "w.bin", offset=10**12)),
                                             root / "ext_offset")))
    (root / "ext_offset" / "w.bin").write_bytes(b"\0" * 100)
    return out


def byte_level(root: Path) -> list[tuple[str, Path]]:
    """Truncated protobufs, zero bytes, and files that are not ONNX at all."""
    good = detector_graph().SerializeToString()
    rng = np.random.default_rng(7)
    out = []
    for i, cut in enumerate(sorted(set(rng.integers(1, len(good) - 1, 28).tolist()) | {1, 2, 10, 40})):
        path = root / "bytes" / f"truncated_{i:02d}.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(good[:cut])
        out.append(("truncated", path))
    blobs = {"zero_bytes": b"", "text": b"this is not a model\n", "json": b'{"graph": {"node": []}}',
             "jpeg": b"\xff\xd8\xff\xe0" + bytes(200), "random": rng.integers(0, 256, 5000, np.uint8).tobytes(),
             "nul": bytes(1000), "elf": b"\x7fELF\x02\x01\x01" + bytes(200), "html": b"<html>model</html>",
             "pytorch_zip": b"PK\x03\x04" + bytes(100), "onnx_text": str(detector_graph().graph.node).encode()}
    for name, data in blobs.items():
        path = root / "bytes" / f"{name}.onnx"
        path.write_bytes(data)
        out.append(("not_onnx" if data else "zero_bytes", path))
    return out


def graph_level(root: Path) -> list[tuple[str, Path]]:
    """Parseable ONNX that no runtime should run, or that edgerun cannot use as a detector."""
    d = root / "graphs"
    cases: dict[str, onnx.ModelProto] = {}
    for v in (30, 99, 1000):
        cases[f"opset_{v}"] = detector_graph(opset=v)
    m = detector_graph()
    m.ir_version = 99
    cases["ir_version_99"] = m
    for op, dom in (("FancyConv", ""), ("Evil", "com.evil"), ("Conv3000", "ai.onnx.ml")):
        m = detector_graph()
        m.graph.node[0].op_type, m.graph.node[0].domain = op, dom
        if dom:
            m.opset_import.append(helper.make_opsetid(dom, 1))
        cases[f"unknown_op_{op}"] = m
    m = detector_graph(weight_in_graph=False)
    cases["missing_initializer"] = m
    m = detector_graph()
    m.graph.node[1].input[1] = "nowhere"
    cases["missing_shape_input"] = m
    m = detector_graph()
    del m.graph.node[1]
    cases["output_never_produced"] = m
    cases["fp16_input_fp32_weights"] = detector_graph(in_type=TensorProto.FLOAT16)
    cases["fp16_weights_fp32_input"] = detector_graph(w=numpy_helper.from_array(_weight().astype(np.float16), "W"))
    cases["int_input"] = detector_graph(in_type=TensorProto.INT32)
    for i, shp in enumerate(((1, 3, 10**6, 10**6), (1, 3, 2**31, 2**31), (1, 3, 0, 128), (1, 3, 128), (3, 128, 128, 1, 1))):
        cases[f"absurd_input_shape_{i}"] = detector_graph(in_shape=shp)
    for i, shp in enumerate(((10**6, 84, N_ANCHORS), (2**16, 84, N_ANCHORS), (1000, 1000, 84, N_ANCHORS))):
        cases[f"absurd_output_shape_{i}"] = _expanded(shp)
    for i, shp in enumerate(((1, 7), (1, 2, 256), (1, 3, 84, 64), (256,), (1, 256, 3))):
        cases[f"no_head_{i}"] = _reshaped(shp)
    out = []
    for name, model in cases.items():
        out.append((name.rstrip("0123456789_").replace("opset", "opset_too_new"), _save(model, d, f"{name}.onnx")))
    return out


def _expanded(shape) -> onnx.ModelProto:
    """The tiny detector whose output is broadcast (Expand) to a huge static ``shape``."""
    m = detector_graph(out_shape=shape)
    m.graph.node[1].output[0] = "r"
    m.graph.initializer.append(numpy_helper.from_array(np.array(shape, np.int64), "big"))
    m.graph.node.append(helper.make_node("Expand", ["r", "big"], ["output0"]))
    return m


def _reshaped(shape) -> onnx.ModelProto:
    """The tiny detector with its output reshaped to ``shape`` (any head-less layout)."""
    m = detector_graph(out_shape=shape)
    n = int(np.prod(shape))
    m.graph.node.insert(1, helper.make_node("Flatten", ["f"], ["flat"], axis=0))
    slice_inputs = [numpy_helper.from_array(np.array(v, np.int64), k)
                    for k, v in (("st", [0]), ("en", [n]), ("ax", [1]))]
    m.graph.initializer.extend(slice_inputs)
    m.graph.node.insert(2, helper.make_node("Slice", ["flat", "st", "en", "ax"], ["sl"]))
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.array(shape, np.int64), "shape"))
    m.graph.node[3].input[0] = "sl"
    return m


def make_models(root: str | os.PathLike) -> list[tuple[str, Path]]:
    root = Path(root)
    return external_escapes(root) + external_missing(root) + byte_level(root) + graph_level(root)


def busy_model(root: str | os.PathLike) -> Path:
    """The tiny detector with weights large enough to fire on real photos: many boxes for NMS to
    work on, at a millisecond per call (concurrency tests on many calls)."""
    w = np.random.default_rng(1).standard_normal(W_SHAPE).astype(np.float32) * 0.05
    w[:4] *= 40  # box rows: tens of pixels
    w[4:] *= 0.3  # class rows: some anchors above 0.25, some below
    return _save(detector_graph(w=numpy_helper.from_array(w, "W")), Path(root) / "busy")


def control_model(root: str | os.PathLike, external: bool = False) -> Path:
    """The valid tiny detector (weights inline, or in ``weights.bin`` next to it)."""
    folder = Path(root) / ("control_ext" if external else "control")
    if not external:
        return _save(detector_graph(), folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "weights.bin").write_bytes(_weight().tobytes())
    return _save(detector_graph(w=_external("W", "weights.bin")), folder)
