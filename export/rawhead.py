"""Cut an Ultralytics DFL detection head's decode out of the graph: edgerun decodes it (head "dfl").

YOLOv8/YOLO11 detectors end in a decode tail: per level, the box convs (4 x reg_max distance-bin logits)
and class convs are concatenated and flattened, then the graph runs the DFL softmax, ``dist2bbox``, the
stride multiply and a sigmoid over every one of the N anchors (8400 at 640). ONNX Runtime spends 15% of
a yolov8n frame there (fp32 and int8 alike; most of it the Softmax over a non-last axis), although a
frame keeps a few dozen anchors. The cut graph ends at the flattened logits, (batch, 4*reg_max + C, N),
and ``kernels.decode`` (head "dfl") runs the sigmoid on the best class logit of each anchor and the DFL
only for the anchors above the score threshold.

The levels are the head's last convs (the trained layers feeding the tail), paired by feature-map size; their
strides come from one ONNX Runtime run at the model's input size (input / feature-map size). Which conv of a
pair is the box branch is read from the tail itself: Ultralytics 8.3 exports concatenate each level's
``(box, cls)`` before flattening; 8.4 exports flatten the box and class convs separately and concatenate the
levels of each, so there the box conv is the one whose values reach the DFL softmax. Everything the raw
output does not need is dropped (a dynamic H/W export's anchor arithmetic on the feature maps' shapes goes,
the feature maps stay). Anything else (segment/pose heads, end2end heads, a tail without the DFL softmax) is
left alone: ``cut_dfl_head`` returns None.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import quant

__all__ = ["RawHead", "cut_dfl_head", "OUTPUT"]

OUTPUT = "raw_dfl"  # the cut graph's output: (batch, 4*reg_max + C, N)


@dataclass(frozen=True)
class RawHead:
    """What the cut found: the levels' strides (ascending) and the DFL bins per box side."""

    strides: tuple[int, ...]
    reg_max: int
    removed: int  # decode-tail nodes removed


def cut_dfl_head(model, input_size: tuple[int, int], num_classes: int) -> tuple[object, RawHead] | None:
    """``model`` (onnx ModelProto, fp32, one output) with its DFL decode tail replaced by the flattened
    raw head ``OUTPUT``; None when the graph is not an Ultralytics DFL detection head of ``num_classes``."""
    import onnx
    from onnx import TensorProto, helper

    if len(model.graph.output) != 1:
        return None
    tail = quant.head_tail_nodes(model)
    nodes = {n.name: n for n in model.graph.node}
    tail_nodes = [nodes[t] for t in tail if t in nodes]
    if not any(n.op_type == "Softmax" for n in tail_nodes):
        return None
    conv_out = [nodes[c].output[0] for c in quant.head_output_layers(model, tail) if c in nodes]
    if not conv_out or len(conv_out) % 2:
        return None
    shapes = _shapes(model, conv_out, input_size)
    if shapes is None:
        return None
    levels = []
    for pair in _level_pairs(conv_out, shapes, tail_nodes):
        if pair is None:
            return None
        box, cls = pair
        (_, cb, h, w), (_, cc, _, _) = shapes[box], shapes[cls]
        if cb % 4 or cb < 8 or cc != num_classes:
            return None
        stride = max(1, int(round(input_size[0] / h)))
        if -(-input_size[0] // stride) != h or -(-input_size[1] // stride) != w:  # decode's ceil(in / s) grid
            return None
        levels.append((stride, box, cls, cb // 4))
    levels.sort()
    if len({lv[3] for lv in levels}) != 1 or len({lv[0] for lv in levels}) != len(levels):
        return None
    reg = levels[0][3]
    rows = 4 * reg + num_classes

    flat_shape = f"{OUTPUT}/shape"
    added = [onnx.numpy_helper.from_array(np.array([0, rows, -1], np.int64), flat_shape)]
    new_nodes, flat = [], []
    for i, (stride, box, cls, _) in enumerate(levels):
        cat, out = f"{OUTPUT}/level{i}", f"{OUTPUT}/level{i}_flat"
        new_nodes.append(helper.make_node("Concat", [box, cls], [cat], name=cat, axis=1))
        new_nodes.append(helper.make_node("Reshape", [cat, flat_shape], [out], name=out))
        flat.append(out)
    new_nodes.append(helper.make_node("Concat", flat, [OUTPUT], name=OUTPUT, axis=2))
    old_out = model.graph.output[0]
    batch = old_out.type.tensor_type.shape.dim[0] if old_out.type.tensor_type.shape.dim else None
    dims = [batch.dim_value if batch is not None and batch.HasField("dim_value") else "batch", rows, "anchors"]
    kept = _needed(list(model.graph.node) + new_nodes, OUTPUT)
    removed = len(model.graph.node) - (len(kept) - len(new_nodes))
    del model.graph.node[:]
    model.graph.node.extend(kept)
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, dims))
    used = {i for n in model.graph.node for i in n.input}
    inits = [t for t in model.graph.initializer if t.name in used] + added
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)
    keep_info = [v for v in model.graph.value_info if v.name in used]
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep_info)
    onnx.checker.check_model(model)
    return model, RawHead(tuple(lv[0] for lv in levels), reg, removed)


def _level_pairs(conv_out: list[str], shapes: dict[str, tuple], tail_nodes: list) -> list[tuple[str, str] | None]:
    """(box, class) conv outputs per feature-map size; None for a size without exactly one such pair.

    The box conv is the first input of a tail ``Concat`` of the pair (Ultralytics 8.3's per-level
    ``Concat(box, cls)``), else the only one of the two whose values reach the DFL ``Softmax`` (8.4)."""
    by_size: dict[tuple, list[str]] = {}
    for t in conv_out:
        by_size.setdefault(shapes[t][2:], []).append(t)
    concats = [list(n.input) for n in tail_nodes if n.op_type == "Concat" and len(n.input) == 2]
    pairs: list[tuple[str, str] | None] = []
    for group in by_size.values():
        if len(group) != 2:
            pairs.append(None)
            continue
        ordered = [c for c in concats if set(c) == set(group)]
        if ordered:
            pairs.append((ordered[0][0], ordered[0][1]))
            continue
        box = [t for t in group if _reaches_softmax(t, tail_nodes)]
        pairs.append((box[0], next(t for t in group if t != box[0])) if len(box) == 1 else None)
    return pairs


def _reaches_softmax(tensor: str, tail_nodes: list) -> bool:
    """Whether ``tensor``'s values flow into a Softmax of the tail (``Shape`` reads no values)."""
    consumers: dict[str, list] = {}
    for n in tail_nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    stack, seen = [tensor], {tensor}
    while stack:
        for n in consumers.get(stack.pop(), []):
            if n.op_type == "Softmax":
                return True
            if n.op_type in quant.SHAPE_OPS:
                continue
            for o in n.output:
                if o not in seen:
                    seen.add(o)
                    stack.append(o)
    return False


def _needed(nodes: list, output: str) -> list:
    """``nodes`` (topologically ordered) that ``output`` depends on, in their order."""
    producer = {o: n for n in nodes for o in n.output}
    need, stack = set(), [output]
    while stack:
        n = producer.get(stack.pop())
        if n is None or id(n) in need:
            continue
        need.add(id(n))
        stack.extend(n.input)
    return [n for n in nodes if id(n) in need]


def _shapes(model, tensors: list[str], input_size: tuple[int, int]) -> dict[str, tuple] | None:
    """Real shapes of ``tensors`` from one ONNX Runtime run on zeros at ``input_size`` (dynamic exports
    declare symbolic feature-map sizes)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in tensors)
    inp = probe.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    if len(dims) != 4 or inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        return None
    nhwc = dims[3].HasField("dim_value") and dims[3].dim_value == 3
    h, w = input_size
    shape = (1, h, w, 3) if nhwc else (1, 3, h, w)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    outs = sess.run(tensors, {inp.name: np.zeros(shape, np.float32)})
    if any(o.ndim != 4 for o in outs):
        return None
    return {t: tuple(o.shape) for t, o in zip(tensors, outs)}
