"""Precision conversions of an ONNX model: fp16 (weights + compute, float32 I/O) and int8 static QDQ.

fp16 uses ONNX Runtime's own ``onnxruntime.transformers.float16.convert_float_to_float16`` (a copy of
onnxconverter-common's converter shipped inside the onnxruntime wheel), so no extra dependency.
int8 uses ``onnxruntime.quantization.quantize_static`` (QDQ U8S8, per-channel weights, MinMax) with the
detection head's tail (box decode, DFL, sigmoid, the output Concat) kept in float: one shared scale
for box coordinates (0..640) and class scores (0..1) rounds every score to 0.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterator, Sequence

import numpy as np

__all__ = ["SHAPE_OPS", "head_tail_nodes", "head_output_layers", "stem_nodes", "to_fp16", "to_int8", "is_quantized", "ImageFeed"]

# Ops that carry trained weights: the walk back from the output stops at them (they stay quantizable)
_WEIGHT_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
_QUANT_OPS = {"ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "DequantizeLinear",
              "QuantizeLinear", "DynamicQuantizeLinear"}
SHAPE_OPS = {"Shape", "Size"}  # outputs depend on their input's shape only, never its values
_MAX_FIXED_WEIGHTS = 64  # e.g. the DFL's 1x16x1x1 arange conv: part of the decode, not a trained layer


def is_quantized(model) -> bool:
    """True when the graph already holds quantization ops (int8 dynamic/static exports)."""
    return any(n.op_type in _QUANT_OPS for n in model.graph.node)


def head_tail_nodes(model) -> list[str]:
    """Names of the nodes between the last trained layers and the graph outputs (decode tail).

    Walks back from every graph output through producers, stopping at weight-bearing layers
    (Conv/Gemm/MatMul with more than a handful of weights), which are left out of the tail, and at the
    input of a ``Shape``/``Size`` node, which reads only its input's shape: a dynamic H/W export computes
    its anchors from the feature maps' shapes, and walking on into those tensors would pull backbone
    activations (e.g. yolov8n's ``/model.15/cv2/act``) and convs into the "tail".
    """

    producer = {o: n for n in model.graph.node for o in n.output}
    sizes = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    tail: dict[str, None] = {}
    stack = [o.name for o in model.graph.output]
    seen: set[str] = set()
    while stack:
        tensor = stack.pop()
        node = producer.get(tensor)
        if node is None or tensor in seen:
            continue
        seen.add(tensor)
        if _is_trained_layer(node, sizes):
            continue
        tail[node.name] = None
        if node.op_type not in SHAPE_OPS:
            stack.extend(node.input)
    return list(tail)


def head_output_layers(model, tail: Sequence[str] | None = None) -> list[str]:
    """The trained layers whose outputs feed the decode tail directly: the head's last 1x1 convs.

    Kept float with the tail by ``finish_onnx``: the box branch's last conv predicts the DFL logits, and
    int8 rounding there moves box edges enough to fail IoU >= 0.9 (yolov8n 640 on 16 held-out coco128
    images, 32 calibration images: box F1 0.888 with them quantized, 0.91 float; 6 small convs, no
    measurable latency change)."""
    tail = set(head_tail_nodes(model) if tail is None else tail)
    sizes = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    feeding = {i for n in model.graph.node if n.name in tail for i in n.input}
    return sorted({producer[t].name for t in feeding if t in producer and producer[t].name not in tail
                   and _is_trained_layer(producer[t], sizes)})


def stem_nodes(model, limit: int = 16) -> list[str]:
    """The stem block: every node from the graph inputs up to (not including) the second trained layer.

    Kept float by ``finish_onnx``: int8 rounding of the first conv and its activation (image in, the
    widest-ranged activations of the network) cost the most box agreement. Measured on a 2-core AVX2
    EPYC (no VNNI), yolov8n 640, 16 held-out coco128 images, 32 calibration images: box F1 0.80 with the
    stem quantized, 0.91 with only its conv float, 0.945 with the whole block float (the first conv is
    about 1% of the model's FLOPs). Empty when no trained layer is found within ``limit`` nodes."""
    sizes = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    stem: list[str] = []
    stack = [i.name for i in model.graph.input if i.name not in sizes]
    seen: set[str] = set()
    first_layer = None
    while stack:
        for node in consumers.get(stack.pop(), []):
            if node.name in seen:
                continue
            seen.add(node.name)
            if _is_trained_layer(node, sizes):
                if first_layer is not None and node.name != first_layer:
                    continue  # the second trained layer: the stem ends before it
                first_layer = node.name
            stem.append(node.name)
            if len(stem) > limit:
                return []
            stack.extend(node.output)
    return stem if first_layer is not None else []


def _is_trained_layer(node, sizes: dict[str, int]) -> bool:
    if node.op_type not in _WEIGHT_OPS:
        return False
    weights = [sizes[i] for i in node.input[1:2] if i in sizes]
    return not weights or weights[0] > _MAX_FIXED_WEIGHTS  # weights from a tensor: treat as trained


def to_fp16(model):
    """fp16 weights and compute, float32 inputs/outputs (a Cast at each end)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=True)


class ImageFeed:
    """A ``CalibrationDataReader``: each image through ``preprocess`` (edgerun's letterbox).

    An image ``read`` cannot read (``OSError``/``ValueError``) is skipped and listed in ``skipped``;
    ``used`` counts the images fed."""

    def __init__(self, images: Sequence[str], read: Callable[[str], np.ndarray],
                 preprocess: Callable[[np.ndarray], np.ndarray], input_name: str,
                 progress: Callable[[int, int], None] | None = None):
        self.images, self.read, self.preprocess = list(images), read, preprocess
        self.input_name, self.progress = input_name, progress
        self.used, self.skipped = 0, []
        self._it: Iterator[int] = iter(range(len(self.images)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        for i in self._it:
            if self.progress:
                self.progress(i + 1, len(self.images))
            try:
                image = self.read(self.images[i])
            except (OSError, ValueError):
                self.skipped.append(self.images[i])
                continue
            self.used += 1
            return {self.input_name: np.array(self.preprocess(image), copy=True)}
        return None

    def rewind(self) -> None:
        self._it = iter(range(len(self.images)))
        self.used, self.skipped = 0, []


def to_int8(src_path: str, out_path: str, feed: ImageFeed, exclude: Sequence[str], *, per_channel: bool = True,
            activation: str = "u8", reduce_range: bool = False) -> None:
    """Static int8 QDQ (uint8 activations, int8 per-channel weights, MinMax) with ``exclude`` float.

    U8S8, not ORT's default S8S8: measured on a 2-core AVX-512 VNNI Xeon with yolov8n 640, U8S8 ran
    at 0.60x the fp32 latency and S8S8 at 2.2x (same box agreement, F1 0.96 vs fp32).
    ``per_channel`` False: one scale per weight tensor; ``activation`` "s8": int8 activations (S8S8);
    ``reduce_range``: 7-bit weights (avoids the u8*s8 pair-sum saturation of AVX2 without VNNI)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if activation not in ("u8", "s8"):
        raise ValueError(f"activation: expected 'u8' or 's8', got {activation!r}")
    quiet = _DropAdvice()  # ORT logs "consider pre-processing" on the root logger on every call
    logging.getLogger().addFilter(quiet)
    try:
        quantize_static(src_path, out_path, feed, quant_format=QuantFormat.QDQ, per_channel=bool(per_channel),
                        activation_type=QuantType.QUInt8 if activation == "u8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8, reduce_range=bool(reduce_range),
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=list(exclude),
                        extra_options={"ActivationSymmetric": activation == "s8", "WeightSymmetric": True})
    finally:
        logging.getLogger().removeFilter(quiet)


class _DropAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()
