"""ModelSpec: everything pre/post-processing needs to know about a model, and edgerun's metadata schema.

Sources, in order of trust:
1. edgerun's own schema: ONNX ``metadata_props["edgerun"]`` holding ``ModelSpec.to_metadata()`` JSON.
2. Ultralytics' metadata (``names``, ``imgsz``, ``stride``, ``task``, ``end2end``, ``args`` (its ``nms``),
   ``kpt_shape``). A model is post-processed in the graph (head "end2end": rows of x1, y1, x2, y2 -- or
   cx, cy, w, h for OBB --, score, class, then the task's extra columns) when ``end2end`` is true **or**
   ``args`` has ``nms: True``, as Ultralytics' own loader decides.
3. Inference from the graph (input/output names, shapes, dtypes); every guessed field is listed
   in ``ModelSpec.guessed`` so ``edgerun info`` can say what was assumed.
Callers may override any field (``Detector.from_path(path, channel_order="bgr", ...)``).
"""
from __future__ import annotations

import ast
import dataclasses
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgerun.kernels.errors import EdgerunValueError

log = logging.getLogger("edgerun")

SCHEMA_KEY = "edgerun"
SCHEMA_VERSION = 1

TASKS = ("detect", "segment", "pose", "classify", "semantic", "face", "obb", "depth")
HEADS = ("yolov8", "yolov5", "yolox", "end2end", "obb", "classify", "semantic", "yunet", "depth", "dfl")
# heads each task can read, the first being the one a ``task=`` override implies when the model's own
# head is not among them (e.g. a detector's metadata opened with task="pose")
TASK_HEADS = {"detect": ("yolov8", "yolov5", "yolox", "end2end", "dfl"), "segment": ("yolov8", "end2end"),
              "pose": ("yolov8", "end2end"), "obb": ("obb", "end2end"), "classify": ("classify",),
              "semantic": ("semantic",), "face": ("yunet",), "depth": ("depth",)}
# Ultralytics tasks read from its metadata (the others are edgerun's own or guessed from the graph)
ULTRALYTICS_TASKS = ("detect", "segment", "pose", "classify", "obb")
RESIZE_MODES = ("letterbox", "stretch", "center_crop")
# "linear": OpenCV's INTER_LINEAR (Ultralytics' LetterBox); "pil_bilinear": Pillow's antialiased bilinear
# (torchvision's Resize on a PIL image: Ultralytics' classify_transforms)
INTERPOLATIONS = ("linear", "pil_bilinear")


@dataclass(frozen=True)
class ModelSpec:
    """How to feed a model and read its outputs. Immutable; use ``replace`` for variants."""

    task: str = "detect"
    input_name: str = "images"
    input_size: tuple[int, int] = (640, 640)  # (height, width) the model was built for
    dynamic_hw: bool = False  # H/W axes are symbolic: rect inference allowed
    dynamic_batch: bool = False
    layout: str = "nchw"  # or "nhwc"
    input_dtype: str = "float32"  # or "float16"
    channel_order: str = "rgb"  # tensor channel order: "rgb" or "bgr"
    scale: float = 1 / 255  # tensor = (pixel * scale - mean) / std
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: str = "letterbox"
    rect: bool = True  # with dynamic_hw: letterbox to the minimal stride-aligned rectangle
    resize_short: int | None = None  # center_crop: short side before cropping
    interpolation: str = "linear"  # one of INTERPOLATIONS
    pad_value: int = 114
    pad_position: str = "center"  # or "top_left" (image at top-left, padding bottom/right)
    stride: int = 32
    head: str = "yolov8"
    strides: tuple[int, ...] = (8, 16, 32)
    reg_max: int = 16  # head "dfl": bins of each box side's distance distribution
    num_classes: int = 80
    names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    kpt_shape: tuple[int, int] | None = None
    end2end: bool = False
    softmax: bool = False  # classify: the output is logits; apply softmax for probabilities
    source: dict = field(default_factory=dict, compare=False)
    guessed: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        _check_choice("task", self.task, TASKS)
        _check_choice("head", self.head, HEADS)
        _check_choice("resize", self.resize, RESIZE_MODES)
        _check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        _check_choice("layout", self.layout, ("nchw", "nhwc"))
        _check_choice("input_dtype", self.input_dtype, ("float32", "float16"))
        _check_choice("channel_order", self.channel_order, ("rgb", "bgr"))
        _check_choice("pad_position", self.pad_position, ("center", "top_left"))
        h, w = self.input_size
        if h <= 0 or w <= 0:
            raise EdgerunValueError(f"input_size: expected positive (height, width), got {self.input_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s == 0 for s in self.std):
            raise EdgerunValueError(f"mean/std: expected 3 values each and std != 0, got {self.mean}, {self.std}")

    def class_name(self, class_id: int) -> str:
        """Name of a class id, or the id as text when the model has no names."""
        return self.names[class_id] if 0 <= class_id < len(self.names) else str(class_id)

    def replace(self, **changes: Any) -> "ModelSpec":
        """A copy with some fields changed (overridden fields are no longer 'guessed')."""
        bad = set(changes) - {f.name for f in dataclasses.fields(self)}
        if bad:
            raise EdgerunValueError(f"unknown ModelSpec field(s) {sorted(bad)}; valid: "
                                    f"{[f.name for f in dataclasses.fields(self)]}")
        changes = {k: _coerce(k, v) for k, v in changes.items()}
        guessed = tuple(g for g in self.guessed if g not in changes)
        return dataclasses.replace(self, **changes, guessed=guessed)

    def to_metadata(self) -> dict[str, str]:
        """edgerun's schema as ONNX ``metadata_props`` entries (one JSON value under ``edgerun``)."""
        d = dataclasses.asdict(self)
        for k in ("guessed", "output_names"):
            d.pop(k)
        d["schema_version"] = SCHEMA_VERSION
        return {SCHEMA_KEY: json.dumps(d, sort_keys=True)}

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly view for ``edgerun info``."""
        d = dataclasses.asdict(self)
        d["names"] = f"{len(self.names)} names" if len(self.names) > 10 else list(self.names)
        return d


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise EdgerunValueError(f"{name}: expected one of {choices}, got {value!r}")


_TUPLE_FIELDS = {"input_size", "mean", "std", "strides", "names", "output_names", "kpt_shape"}


def _coerce(key: str, value: Any) -> Any:
    if key in _TUPLE_FIELDS and value is not None:
        if isinstance(value, (int, float)) and key == "input_size":
            value = (int(value), int(value))
        value = tuple(value)
        if key in ("input_size", "strides", "kpt_shape"):
            value = tuple(int(v) for v in value)
        elif key in ("mean", "std"):
            value = tuple(float(v) for v in value)
    return value


def spec_from_metadata(meta: dict[str, str]) -> tuple[dict[str, Any], set[str]]:
    """Fields found in ``metadata_props``: edgerun's schema first, else Ultralytics' keys."""
    if SCHEMA_KEY in meta:
        try:
            d = json.loads(meta[SCHEMA_KEY])
        except json.JSONDecodeError as exc:
            raise EdgerunValueError(f"metadata '{SCHEMA_KEY}' is not valid JSON: {exc}") from None
        version = d.pop("schema_version", None)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise EdgerunValueError(f"metadata schema_version {version!r} is newer than this edgerun "
                                    f"understands ({SCHEMA_VERSION}); upgrade edgerun")
        known = {f.name for f in dataclasses.fields(ModelSpec)}
        fields = {k: _coerce(k, v) for k, v in d.items() if k in known}
        return fields, set(fields)
    return _ultralytics_fields(meta)


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _ultralytics_fields(meta: dict[str, str]) -> tuple[dict[str, Any], set[str]]:
    out: dict[str, Any] = {}
    if "names" in meta:
        names = _literal(meta["names"])
        if isinstance(names, dict):
            names = [str(names[k]) for k in sorted(names)]
        if isinstance(names, (list, tuple)):
            out["names"] = tuple(str(n) for n in names)
            out["num_classes"] = len(out["names"])
    if "imgsz" in meta:
        sz = _literal(meta["imgsz"])
        if isinstance(sz, int):
            sz = [sz, sz]
        if isinstance(sz, (list, tuple)) and len(sz) == 2:
            out["input_size"] = (int(sz[0]), int(sz[1]))
    if "stride" in meta:
        s = _literal(meta["stride"])
        if isinstance(s, (int, float)):
            out["stride"] = int(s)
    task = meta.get("task")
    if task in ULTRALYTICS_TASKS:
        out["task"] = task
    if task == "classify":  # Ultralytics classify_transforms: resize short side, centre crop, /255
        out.update(head="classify", resize="center_crop", softmax=False, interpolation="pil_bilinear")
    if task in ("semantic", "depth"):  # YOLO26 dense heads: RGB /255 (no family guesses); depth stretches
        out.update(task=task, head=task, resize="letterbox" if task == "semantic" else "stretch", scale=1 / 255,
                   mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    if "kpt_shape" in meta:
        k = _literal(meta["kpt_shape"])
        if isinstance(k, (list, tuple)) and len(k) == 2:
            out["kpt_shape"] = (int(k[0]), int(k[1]))
    args = _literal(meta.get("args", "{}"))
    nms_in_graph = isinstance(args, dict) and args.get("nms") is True
    if str(meta.get("end2end", "")).lower() == "true" or nms_in_graph:  # Ultralytics' AutoBackend rule
        out["end2end"] = True
        out["head"] = "end2end"
    else:
        if "end2end" in meta or "args" in meta:
            out["end2end"] = False
        if task == "obb":
            out["head"] = "obb"
        elif task in ("detect", "segment", "pose") and meta.get("head", "Detect") != "RTDETRDecoder":
            out["head"] = "yolov8"  # Ultralytics' raw one-to-many head (1, 4 + C + extra, N)
    if out:  # what the exporter said, for ``edgerun info``
        out["source"] = {"framework": "ultralytics", "version": meta.get("version", "")}
        if "head" in meta:
            out["source"]["head"] = meta["head"]
        if isinstance(args, dict) and "nms" in args:
            out["source"]["nms"] = args["nms"]
    return out, set(out)  # Ultralytics (and YOLOv5) exports: letterbox 114 centred, RGB /255


def resolve_spec(metadata: dict[str, str], inputs, outputs, overrides: dict[str, Any] | None = None
                 ) -> ModelSpec:
    """Build the ModelSpec of a model from its metadata and graph, then apply caller overrides.

    ``inputs``/``outputs`` are sequences of objects with ``name``, ``shape`` (ints or None) and
    ``dtype``. Fields neither in metadata nor overridden are inferred and listed in ``guessed``. A
    ``task`` override keeps the model's head when the task can read it (``TASK_HEADS``), else implies
    the task's own head.
    """
    overrides = dict(overrides or {})
    fields, known = spec_from_metadata(metadata)
    known |= set(overrides)
    fields.update({k: _coerce(k, v) for k, v in overrides.items()})
    if not inputs:
        raise EdgerunValueError("model has no inputs")
    inp = inputs[0]
    graph = _from_graph(inp, outputs, fields)
    guessed = sorted(k for k in graph if k not in known)
    merged = {**graph, **fields, "guessed": tuple(guessed)}
    valid = {f.name for f in dataclasses.fields(ModelSpec)}
    task, readable = overrides.get("task"), TASK_HEADS.get(overrides.get("task"), ())
    if task and "head" not in overrides and merged.get("head") not in readable and task != "detect" and readable:
        return resolve_spec(metadata, inputs, outputs, {**overrides, "head": readable[0]})
    spec = ModelSpec(**{k: v for k, v in merged.items() if k in valid})
    if guessed:
        log.info("edgerun: inferred from the graph (no metadata): %s", ", ".join(guessed))
    return spec


def _from_graph(inp, outputs, fields: dict[str, Any]) -> dict[str, Any]:
    """What the graph says: input layout/size/dtype, head format, class count."""
    g: dict[str, Any] = {"input_name": inp.name, "output_names": tuple(o.name for o in outputs)}
    shape = tuple(inp.shape)
    if len(shape) != 4:
        raise EdgerunValueError(f"input {inp.name!r}: expected a 4-D image tensor, got shape {shape}")
    nhwc = shape[3] in (1, 3) and shape[1] not in (1, 3)
    g["layout"] = "nhwc" if nhwc else "nchw"
    h, w = (shape[1], shape[2]) if nhwc else (shape[2], shape[3])
    g["dynamic_hw"] = not (isinstance(h, int) and isinstance(w, int))
    g["dynamic_batch"] = not isinstance(shape[0], int)
    if not g["dynamic_hw"]:
        g["input_size"] = (h, w)
    g["input_dtype"] = "float16" if inp.dtype == np.float16 else "float32"
    size = fields.get("input_size", g.get("input_size", (640, 640)))
    head = _guess_head(outputs, fields, size)
    if head.get("num_classes", 1) >= 1:  # else: no known head; the task reports the shapes
        g.update(head)
    if g.get("head") in ("yolov8", "yolov5", "yolox") and fields.get("num_classes", g.get("num_classes")) == 80:
        from .coco import COCO80  # an 80-class YOLO without names is, in practice, COCO-trained
        g["names"] = COCO80
    return g


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _guess_classify(shape: tuple, fields: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """A (N, C) output: a classifier. Without metadata, assume torchvision/ImageNet conventions:
    resize the short side to size*256/224, centre-crop, RGB, ImageNet mean/std, logits out."""
    g: dict[str, Any] = {"task": "classify", "head": "classify", "num_classes": shape[-1] or 0,
                         "resize": "center_crop"}
    if fields.get("source"):  # framework metadata (Ultralytics): its own transforms, softmax inside
        return g
    return {**g, "resize_short": int(round(min(size) * 256 / 224)), "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD, "softmax": True}


VOC_NAMES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
             "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
             "train", "tvmonitor")  # PASCAL VOC: 21-class per-pixel models are assumed to be VOC (guessed)
YUNET_OUTPUTS = tuple(f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in (8, 16, 32))


def _guess_face_or_semantic(outputs, shapes, fields: dict[str, Any], size) -> dict[str, Any]:
    """YuNet (its 12 named outputs) or a per-pixel classifier (output (1, H, W, C) at the input size)."""
    names = {o.name for o in outputs}
    if fields.get("task") == "face" or set(YUNET_OUTPUTS) <= names:  # OpenCV's conventions
        return {"task": "face", "head": "yunet", "num_classes": 1, "names": ("face",), "channel_order": "bgr",
                "scale": 1.0, "pad_position": "top_left", "pad_value": 0, "strides": (8, 16, 32)}
    first = shapes[0] if shapes else ()
    if len(outputs) == 1 and len(first) == 4 and fields.get("task") in (None, "semantic"):
        # C == 3 is left alone: an image-to-image model (or an identity test graph), not classes
        nhwc = tuple(first[1:3]) == tuple(size) and isinstance(first[3], int) and first[3] not in (1, 3)
        nchw = tuple(first[2:4]) == tuple(size) and isinstance(first[1], int) and first[1] not in (1, 3)
        if nhwc or nchw:  # TF-style [-1, 1] input (x/127.5 - 1), stretched to the input size
            c = first[3] if nhwc else first[1]
            g = {"task": "semantic", "head": "semantic", "num_classes": c, "resize": "stretch",
                 "scale": 1 / 127.5, "mean": (1.0, 1.0, 1.0)}
            return {**g, "names": VOC_NAMES} if c == len(VOC_NAMES) and "names" not in fields else g
    return {}


# heads whose model family carries its own preprocessing conventions (BGR 0..255 top-left for YuNet,
# [-1, 1] stretch for TF segmenters): a head or task override keeps them (``open_model(yunet, task="face")``)
_CONVENTION_HEADS = ("yunet", "semantic")


def _guess_conventions(outputs, shapes, fields: dict[str, Any], size) -> dict[str, Any] | None:
    """The family conventions when the graph (or a head/task override) names YuNet or a per-pixel
    classifier; ``{}`` when an override names such a head the graph does not confirm; ``None`` when the
    YOLO-family guesses apply."""
    head = fields.get("head")
    if head is not None and head != "yolov8" and head not in _CONVENTION_HEADS:
        return {}
    special = _guess_face_or_semantic(outputs, shapes, fields, size)
    if special and head in (None, "yolov8", special["head"]):
        return special
    return {} if head in _CONVENTION_HEADS else None


def _channels_first(rows: int, outputs, shapes, fields: dict[str, Any], task: str) -> dict[str, Any]:
    """Ultralytics' channels-first head (1, 4 + C + extra, N); N may be symbolic (dynamic H/W exports
    declare ``(batch, rows, anchors)``), the row count alone gives the classes."""
    if task == "obb":  # 4 + C + 1: the angle row last
        return {"head": "obb", "num_classes": rows - 5}
    if task == "segment" or len(outputs) == 2:
        extra = shapes[1][1] if len(shapes) > 1 and len(shapes[1]) > 1 and shapes[1][1] else 32
        return {"head": "yolov8", "task": "segment", "num_classes": rows - 4 - extra}
    if fields.get("kpt_shape"):
        k = fields["kpt_shape"]
        return {"head": "yolov8", "task": "pose", "num_classes": rows - 4 - k[0] * k[1]}
    return {"head": "yolov8", "num_classes": rows - 4}


def _end2end_task(extra: int, shapes, fields: dict[str, Any], task: str) -> dict[str, Any] | None:
    """The task of an NMS-free / in-graph-NMS output (1, K, 6 + extra): detect (no extra), segment (the
    prototypes' M coefficients), pose (K*D of ``kpt_shape``), obb (one angle; only when the task is
    known: a 7-column output is otherwise ambiguous). None when ``extra`` fits none of them."""
    protos = shapes[1] if len(shapes) == 2 and len(shapes[1]) == 4 else None
    kpt = fields.get("kpt_shape")
    if extra == 0 and task in ("detect", None):
        return {"head": "end2end", "end2end": True}
    if protos is not None and protos[1] == extra and task in ("segment", "detect", None):
        return {"head": "end2end", "end2end": True, "task": "segment"}
    if kpt and extra == kpt[0] * kpt[1] and task in ("pose", "detect", None):
        return {"head": "end2end", "end2end": True, "task": "pose"}
    if task == "obb" and extra == 1:
        return {"head": "end2end", "end2end": True}
    return None


def _guess_head(outputs, fields: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    shapes = [tuple(o.shape) for o in outputs]
    first = shapes[0] if shapes else ()
    task = fields.get("task", "detect")
    special = _guess_conventions(outputs, shapes, fields, size)
    if special is not None:  # also {} for any other non-yolov8 head override: nothing to guess
        return special
    if task == "classify" or (len(first) == 2 and len(outputs) == 1):
        return _guess_classify(first, fields, size)
    if len(first) == 3 and isinstance(first[1], int) and first[2] is None and task != "classify":
        return _channels_first(first[1], outputs, shapes, fields, task)  # dynamic H/W: (1, 4+C+E, anchors)
    if len(first) != 3 or not all(isinstance(d, int) for d in first[1:]):
        return {}  # left for the task's own validation to report with the shapes
    a, b = first[1], first[2]
    if a <= 1000 and b >= 6 and a >= b:  # (1, K, 6 + E): post-processed in the graph, when E fits a task
        e2e = _end2end_task(b - 6, shapes, fields, task)
        if e2e is not None:
            return e2e
    if a < b:  # channels-first Ultralytics head: (1, 4 + C + extra, N)
        return _channels_first(a, outputs, shapes, fields, task)
    # rows-first (1, N, 5 + C): YOLOv5/v7 (3 anchors a cell, decoded) or YOLOX (1 a cell, raw grid)
    strides = fields.get("strides", (8, 16, 32))
    cells = sum((size[0] // s) * (size[1] // s) for s in strides)
    if a == cells:
        # YOLOX conventions unless told otherwise: BGR 0..255, image at top-left
        return {"head": "yolox", "num_classes": b - 5, "channel_order": "bgr", "scale": 1.0,
                "pad_position": "top_left"}
    return {"head": "yolov5", "num_classes": b - 5}


def graph_input_size(inputs, layout: str = "nchw") -> tuple[int, int] | None:
    """The (height, width) the graph's first input is fixed to, or None when H/W are symbolic."""
    shape = tuple(inputs[0].shape) if inputs else ()
    if len(shape) != 4:
        return None
    h, w = (shape[1], shape[2]) if layout == "nhwc" else (shape[2], shape[3])
    return (h, w) if isinstance(h, int) and isinstance(w, int) else None


def fit_input_size(session, spec: ModelSpec):
    """Check, when the model opens, that the graph can take ``spec.input_size``; returns
    ``(session, spec)``. A graph fixed to another size is reopened with symbolic H/W when it is fully
    convolutional (``Session.with_symbolic_hw``; the spec then letterboxes to exactly that size), else
    ``EdgerunValueError`` names the graph's fixed size (instead of ONNX Runtime failing at the first run)."""
    from .session import ModelError

    fixed = graph_input_size(session.inputs, spec.layout)
    if fixed is None or tuple(spec.input_size) == fixed:
        return session, spec
    try:
        session = session.with_symbolic_hw()
    except ModelError as exc:
        reason = exc.reason
        raise EdgerunValueError(
            f"input_size: the graph's input {session.inputs[0].name!r} is fixed to {fixed[0]}x{fixed[1]} (HxW) and "
            f"cannot run at {spec.input_size[0]}x{spec.input_size[1]} ({reason}); use input_size={fixed} "
            "or re-export the model with dynamic H/W") from None
    return session, spec.replace(dynamic_hw=True, rect=False)
