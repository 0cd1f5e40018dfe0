"""``Task``: what every task class shares: session, spec, per-thread buffers and the three stages.

    geometry = task.plan(h, w)                               # where the frame lands (once per frame)
    tensor, geometry = task.preprocess(image, fmt)           # into a reused per-thread buffer
    outputs = task.infer(tensor)                             # ORT (or a worker's own session)
    result = task.postprocess(outputs, geometry)             # each task's own
    result = task.run(image, fmt)                            # the three, timed into result.timings

A subclass names its options class (``Options = XOptions``, ``tasks/options.py``) and the spec task it
serves (``TASK = "x"``), checks the model in ``__init__`` (then calls ``super().__init__``) and writes
``postprocess``. ``Task.open`` alone opens a file (session, spec, input size); ``from_path``,
``open_model``, the CLI and batch go through it.
Streams (``streaming/stages.py``) and benchmarks (``bench.EdgerunPipeline``) call these stages
instead of re-spelling them: stage names are ``STAGES``, buffer shapes ``tensor_shape``.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from edgerun.kernels.errors import EdgerunTypeError, EdgerunValueError
from edgerun.kernels.preprocess import Geometry, letterbox, plan
from edgerun.kernels.resample import pil_resize

from ..session import Session
from ..spec import ModelSpec, fit_input_size, resolve_spec
from .options import ModelOptions, TaskOptions, split_keywords, unknown_keyword

__all__ = ["Task", "STAGES", "frame_size", "stamp", "load", "task_class"]

STAGES = ("preprocess", "inference", "postprocess")  # the keys of every result's ``timings``
Clock = Callable[[str], None]  # called with a stage's name right after the stage ends


_TO_BGR = {"gray": "COLOR_GRAY2BGR", "nv12": "COLOR_YUV2BGR_NV12", "nv21": "COLOR_YUV2BGR_NV21",
           "i420": "COLOR_YUV2BGR_I420", "yuyv": "COLOR_YUV2BGR_YUYV"}


def to_bgr(image: np.ndarray, pixel_format: str) -> np.ndarray:
    """A raw frame buffer as a (H, W, 3) uint8 BGR image (OpenCV's conversions)."""
    import cv2

    if pixel_format == "bgr":
        return image
    if pixel_format == "rgb":
        return np.ascontiguousarray(image[:, :, ::-1])
    if pixel_format not in _TO_BGR:
        raise EdgerunValueError(f"pixel_format: expected one of bgr, rgb, {', '.join(_TO_BGR)}, got {pixel_format!r}")
    return cv2.cvtColor(np.ascontiguousarray(image), getattr(cv2, _TO_BGR[pixel_format]))


def frame_size(image: np.ndarray, pixel_format: str = "bgr") -> tuple[int, int]:
    """(height, width) of the picture in a raw frame buffer (4:2:0 YUV buffers are 1.5x as tall)."""
    if not isinstance(image, np.ndarray):
        raise EdgerunTypeError(f"image: expected a numpy.ndarray, got {type(image).__name__}")
    if image.ndim < 2 or image.shape[0] == 0 or image.shape[1] == 0:
        raise EdgerunValueError(f"image: expected a non-empty image, got shape {image.shape}")
    if pixel_format in ("nv12", "nv21", "i420", "YUV420", "YVU420"):
        return image.shape[0] * 2 // 3, image.shape[1]
    return image.shape[0], image.shape[1]


class Task:
    """A model on ONNX Runtime with Numba pre/post-processing; subclasses add ``postprocess``.

    Thread-safe: threads may share one task object (each thread gets its own input buffers).
    """

    #: this task's options type (a frozen dataclass from ``tasks/options.py``)
    Options: type[TaskOptions] = TaskOptions
    #: the spec task this class serves (``open_model`` picks the class by it)
    TASK: str = ""

    def __init__(self, session: Session, spec: ModelSpec, options: TaskOptions | None = None):
        options = self.Options() if options is None else options
        if not isinstance(options, self.Options):
            raise EdgerunTypeError(f"options: expected {self.Options.__name__}, got {type(options).__name__}")
        self.session = session
        self.spec = spec
        self.options = options
        self.tensor_dtype = np.dtype(np.float16 if spec.input_dtype == "float16" else np.float32)
        self._local = threading.local()

    @classmethod
    def open(cls, path: str, options: TaskOptions | Mapping[str, Any] | None = None,
             model: ModelOptions | None = None, *, strict: bool = True):
        """Open an ONNX file: the one place that builds the Session, resolves the spec (metadata, graph,
        ``model``'s overrides) and fits the input size. On ``Task`` itself the class is the one the
        spec's task names (``open_model``). ``options``: this task's Options, or a dict of its fields
        (``strict=False`` drops names that are another task's options, never an unknown one)."""
        model = ModelOptions() if model is None else model
        session, spec = load(path, model)
        task_cls = task_class(spec.task, path) if cls is Task else cls
        if options is None or isinstance(options, Mapping):
            options = task_cls.Options(**task_cls.fit_options(dict(options or {}), model, strict))
        return task_cls(session, spec, options)

    @classmethod
    def fit_options(cls, options: dict[str, Any], model: ModelOptions, strict: bool = True) -> dict[str, Any]:
        """Option keywords as this task's Options takes them; names of other tasks' options raise
        ``EdgerunValueError`` (or are dropped when not ``strict``), unknown names ``TypeError``."""
        mine = cls.Options.names()
        for k in list(options):
            if k in mine:
                continue
            from .dispatch import all_option_names  # the registry imports every task: only when asked
            if k not in all_option_names():
                raise unknown_keyword(f"{cls.__name__} options", k, mine)
            if strict:
                raise EdgerunValueError(f"option {k!r} does not apply to {cls.__name__} (it takes "
                                        f"{', '.join(mine) or 'no options'})")
            del options[k]
        return options

    @classmethod
    def from_path(cls, path: str, **kwargs: Any):
        """``open`` with keywords: this task's option names (``cls.Options``) go to the task, session
        names (``threads``, ``spin``, ``providers``) and ModelSpec fields (``input_size=(480, 640)``,
        ``channel_order="bgr"``, ``names=[...]``) to ``ModelOptions``. An unknown keyword raises
        ``TypeError`` naming the closest valid one."""
        opts, model = split_keywords(f"{cls.__name__}.from_path", kwargs, cls.Options.names())
        return cls.open(path, opts, model)

    # -- the three stages -------------------------------------------------------------------
    @property
    def resize_mode(self) -> str:
        """The preprocessing mode: the spec's, or "rect" for letterbox models with dynamic H/W."""
        s = self.spec
        return "rect" if (s.dynamic_hw and s.rect and s.resize == "letterbox") else s.resize

    def plan(self, height: int, width: int) -> Geometry:
        """Where an image of this size lands in the model input."""
        s = self.spec
        return plan(height, width, s.input_size, mode=self.resize_mode, stride=s.stride,
                    pad_position=s.pad_position, resize_short=s.resize_short)

    def geometry(self, image: np.ndarray, pixel_format: str = "bgr") -> Geometry:
        """``plan`` for this frame buffer."""
        return self.plan(*frame_size(image, pixel_format))

    def tensor_shape(self, n: int, geometry: Geometry) -> tuple[int, int, int, int]:
        """The model input's shape for ``n`` frames of this geometry (NCHW or NHWC)."""
        g = geometry
        return (n, 3, g.dst_h, g.dst_w) if self.spec.layout == "nchw" else (n, g.dst_h, g.dst_w, 3)

    def preprocess(self, image: np.ndarray, pixel_format: str = "bgr", out: np.ndarray | None = None,
                   geometry: Geometry | None = None) -> tuple[np.ndarray, Geometry]:
        """Image -> model input tensor (1, C, H, W) or (1, H, W, C), written into ``out`` or a reused
        per-thread buffer. ``geometry``: this frame's ``geometry()`` when already computed."""
        geo = self.geometry(image, pixel_format) if geometry is None else geometry
        if out is None:
            out = self._buffer(self.tensor_shape(1, geo))
        s = self.spec
        if s.interpolation == "pil_bilinear":
            return out, self._pil_preprocess(image, pixel_format, out, geo)
        _, geo = letterbox(image, s.input_size, pixel_format=pixel_format, mode=self.resize_mode,
                           stride=s.stride, pad_value=s.pad_value, pad_position=s.pad_position,
                           channel_order=s.channel_order, scale=s.scale, mean=s.mean, std=s.std,
                           layout="chw" if s.layout == "nchw" else "hwc", dtype=self.tensor_dtype,
                           out=out[0], resize_short=s.resize_short, geometry=geo)
        return out, geo

    def infer(self, tensor: np.ndarray, session: Session | None = None) -> list[np.ndarray]:
        """Run the model on a prepared tensor (on ``session``, e.g. a stream worker's, if given)."""
        return (session or self.session).run({self.spec.input_name: tensor})

    def postprocess(self, outputs: list[np.ndarray], geometry: Geometry, batch_index: int = 0):
        """Raw outputs of image ``batch_index`` -> this task's result, in source pixels."""
        raise NotImplementedError(f"{type(self).__name__}.postprocess")

    # -- timed calls ------------------------------------------------------------------------
    def run(self, image: np.ndarray, pixel_format: str = "bgr", *, clock: Clock | None = None):
        """The three stages on one frame: uint8 BGR/RGB (H, W, 3), GRAY (H, W), NV12/NV21/I420
        (H*3//2, W) or YUYV (H, W, 2), as named by ``pixel_format``. The result's ``timings``
        hold each stage's ms; ``clock(stage)`` (e.g. a benchmark recorder's) is called after each."""
        t0 = time.perf_counter()
        tensor, geo = self.preprocess(image, pixel_format)
        t1 = _tick(clock, "preprocess")
        outputs = self.infer(tensor)
        t2 = _tick(clock, "inference")
        result = self.postprocess(outputs, geo)
        t3 = _tick(clock, "postprocess")
        return stamp(result, ((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3), self.spec.names)

    def run_batch(self, images: Iterable[np.ndarray], pixel_format: str = "bgr", *,
                  clock: Clock | None = None) -> list:
        """``run`` on several frames; one batched ORT run when the model has a dynamic batch axis
        and the frames share one input geometry, else frame by frame. Timings are per frame."""
        images = list(images)
        if not images:
            return []
        geos = [self.geometry(im, pixel_format) for im in images]
        if not self.spec.dynamic_batch or len({(g.dst_h, g.dst_w) for g in geos}) != 1:
            return [self.run(im, pixel_format, clock=clock) for im in images]
        t0 = time.perf_counter()
        batch = self._buffer(self.tensor_shape(len(images), geos[0]))
        for i, (im, g) in enumerate(zip(images, geos)):
            self.preprocess(im, pixel_format, out=batch[i:i + 1], geometry=g)
        t1 = _tick(clock, "preprocess")
        outputs = self.infer(batch)
        t2 = _tick(clock, "inference")
        results = [self.postprocess(outputs, g, i) for i, g in enumerate(geos)]
        t3 = _tick(clock, "postprocess")
        n = len(images)
        ms = ((t1 - t0) * 1e3 / n, (t2 - t1) * 1e3 / n, (t3 - t2) * 1e3 / n)
        return [stamp(r, ms, self.spec.names) for r in results]

    def close(self) -> None:
        """Release the ORT session."""
        self.session = None  # type: ignore[assignment]

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------
    def _pil_preprocess(self, image: np.ndarray, pixel_format: str, out: np.ndarray, geo: Geometry) -> Geometry:
        """Pillow's antialiased bilinear resize (torchvision ``Resize`` on a PIL image, as Ultralytics'
        ``classify_transforms``) of the planned region, then colour/normalise/layout with no resampling."""
        s = self.spec
        fmt = pixel_format
        if fmt not in ("bgr", "rgb"):  # other formats: OpenCV's conversion to BGR first
            image, fmt = to_bgr(image, fmt), "bgr"
        top, left = -geo.top, -geo.left
        if top < 0 or left < 0 or top + geo.dst_h > geo.new_h or left + geo.dst_w > geo.new_w:
            raise EdgerunValueError(f"interpolation 'pil_bilinear' needs the resized {geo.new_w}x{geo.new_h} image "
                                    f"to cover the {geo.dst_w}x{geo.dst_h} input (resize_short >= the input side)")
        crop = pil_resize(image, (geo.new_h, geo.new_w), region=(top, left, geo.dst_h, geo.dst_w))
        letterbox(crop, (geo.dst_h, geo.dst_w), pixel_format=fmt, mode="stretch", channel_order=s.channel_order,
                  scale=s.scale, mean=s.mean, std=s.std, layout="chw" if s.layout == "nchw" else "hwc",
                  dtype=self.tensor_dtype, out=out[0])
        return geo

    def _buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """This thread's reused input buffer of ``shape``."""
        bufs = getattr(self._local, "bufs", None)
        if bufs is None:
            bufs = self._local.bufs = {}
        buf = bufs.get(shape)
        if buf is None:
            if len(bufs) > 8:  # rect mode: a few aspect ratios at most in practice
                bufs.clear()
            buf = bufs[shape] = np.empty(shape, self.tensor_dtype)
        return buf


def load(path: str, model: ModelOptions | None = None) -> tuple[Session, ModelSpec]:
    """The file's Session and resolved spec (metadata, graph, ``model``'s overrides, the input size
    fitted to the graph): what ``Task.open`` builds a task on; ``edgerun info`` describes it."""
    model = ModelOptions() if model is None else model
    if not isinstance(model, ModelOptions):
        raise EdgerunTypeError(f"model: expected ModelOptions, got {type(model).__name__}")
    session = Session(str(path), threads=model.threads, spin=model.spin, providers=model.providers)
    spec = resolve_spec(session.metadata, session.inputs, session.outputs, model.overrides)
    return fit_input_size(session, spec)


def stamp(result, ms: Sequence[float], names: tuple[str, ...]):
    """The one place results get their per-stage ``timings`` (ms, in ``STAGES`` order) and the
    model's class ``names`` (the spec's tuple, not a copy: ``to_records()`` names classes)."""
    result.timings = dict(zip(STAGES, ms))
    result.names = names
    return result


def task_class(task: str, path: str = "") -> type:
    """The Task class serving a spec task (``tasks/dispatch.py``'s registry)."""
    from .dispatch import TASK_CLASSES
    if task not in TASK_CLASSES:
        raise EdgerunValueError(f"{path}: task {task!r} is not supported yet; pass task= one of "
                                f"{', '.join(TASK_CLASSES)}")
    return TASK_CLASSES[task]


def _tick(clock: Clock | None, stage: str) -> float:
    t = time.perf_counter()
    if clock is not None:
        clock(stage)
    return t
