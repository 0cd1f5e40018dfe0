"""Tiny, fast inputs for the stream tests: a synthetic ONNX detector and small videos."""
from __future__ import annotations

import json

import cv2
import numpy as np

# the stream tests' frames and video writer, shared with benchmarks/stream_faults.py
from edgerun.runtime.bench.faults import synthetic_frames as frames  # noqa: F401
from edgerun.runtime.bench.faults import write_video  # noqa: F401


def tiny_detector(path: str, size: int = 64, classes: int = 4) -> str:
    """A YOLOv8-shaped detector (1, 4+C, N) in a few KB: a stride-8 conv whose class rows are the
    patch's mean channel value and whose box rows are fixed 16x16 boxes on the anchor grid."""
    import onnx
    from onnx import TensorProto, helper

    from edgerun.runtime.spec import ModelSpec

    g = size // 8
    rows = 4 + classes
    w = np.zeros((rows, 3, 8, 8), np.float32)
    for c in range(classes):
        w[4 + c, c % 3] = 1.0 / 64 * (1.0 if c < 3 else 0.5)
    ys, xs = np.mgrid[0:g, 0:g]
    bias = np.zeros((1, rows, g * g), np.float32)
    bias[0, 0], bias[0, 1] = (xs.ravel() * 8 + 4), (ys.ravel() * 8 + 4)
    bias[0, 2:4] = 16
    nodes = [helper.make_node("Conv", ["images", "w"], ["c"], strides=[8, 8]),
             helper.make_node("Reshape", ["c", "shape"], ["r"]),
             helper.make_node("Add", ["r", "bias"], ["output0"])]
    inits = [helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel()),
             helper.make_tensor("shape", TensorProto.INT64, [3], [1, rows, g * g]),
             helper.make_tensor("bias", TensorProto.FLOAT, bias.shape, bias.ravel())]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                            [1, 3, size, size])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, rows, g * g])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    spec = ModelSpec(input_size=(size, size), num_classes=classes, names=tuple(f"c{i}" for i in range(classes)))
    for k, v in spec.to_metadata().items():
        model.metadata_props.add(key=k, value=v if isinstance(v, str) else json.dumps(v))
    onnx.save(model, path)
    return path


def to_format(bgr: np.ndarray, fmt: str) -> np.ndarray:
    """BGR -> the raw layouts camera software hands over (OpenCV's shapes)."""
    if fmt == "bgr":
        return bgr
    if fmt == "i420":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    h, w = bgr.shape[:2]
    y, u, v = i420[:h], i420[h:h + h // 4].reshape(-1), i420[h + h // 4:].reshape(-1)
    if fmt == "nv12":
        uv = np.stack([u, v], 1).reshape(h // 2, w)
        return np.concatenate([y, uv])
    if fmt == "yuyv":
        u2 = u.reshape(h // 2, w // 2).repeat(2, 0)
        v2 = v.reshape(h // 2, w // 2).repeat(2, 0)
        out = np.empty((h, w, 2), np.uint8)
        out[..., 0] = y
        out[:, 0::2, 1], out[:, 1::2, 1] = u2, v2
        return out
    raise ValueError(fmt)
