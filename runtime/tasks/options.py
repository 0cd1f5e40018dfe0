"""Typed options: one frozen dataclass per task, and ``ModelOptions`` for the session and spec.

    opts = DetectorOptions(score_threshold=0.4)             # checked here, not at the first frame
    det = Detector.open("yolov8n.onnx", opts, ModelOptions(threads=2, input_size=(480, 640)))
    det = Detector.from_path("yolov8n.onnx", score_threshold=0.4, threads=2)   # the same, as keywords

Every value is checked in ``__post_init__`` with ``kernels.checks`` (the message names the argument
and what came); an unknown keyword anywhere raises ``TypeError`` naming the closest valid one.
A new task writes ``@task_options class XOptions(TaskOptions)`` (or extends an existing one, e.g.
``DetectorOptions``) with its fields and ``__post_init__`` checks, and sets ``Options = XOptions``.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from edgerun.kernels import checks

from ..spec import ModelSpec

__all__ = ["TaskOptions", "DetectorOptions", "SegmenterOptions", "PoseOptions", "ObbOptions", "FaceOptions",
           "ClassifierOptions", "SemanticOptions", "DepthOptions", "ModelOptions", "SPEC_FIELDS", "unknown_keyword",
           "split_keywords", "task_options"]

MASK_MODES = ("full", "proto", "none")
DEFAULT_MAX_PIXELS = 1920 * 1080  # a Full-HD frame still runs at its own size (faces, native)
#: ModelSpec fields a caller may override (``source``/``guessed`` are the resolver's bookkeeping)
SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(ModelSpec) if f.name not in ("source", "guessed"))
SESSION_FIELDS = ("threads", "spin", "providers")


def unknown_keyword(where: str, key: str, valid: Iterable[str]) -> TypeError:
    """The ``TypeError`` for a keyword ``where`` does not take: the valid names and the closest one."""
    valid = sorted(set(valid))
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return TypeError(f"{where} got an unexpected keyword {key!r}.{hint} Valid names: {', '.join(valid) or '(none)'}")


def field_names(cls) -> tuple[str, ...]:
    """The init fields of an options dataclass."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.init)


def task_options(cls):
    """Make ``cls`` a frozen, keyword-only options dataclass whose constructor refuses an unknown
    keyword with ``unknown_keyword`` (the valid names, the closest one); checks go in ``__post_init__``."""
    cls = dataclass(frozen=True, kw_only=True)(cls)
    init, names = cls.__init__, field_names(cls)

    @functools.wraps(init)
    def __init__(self, **kwargs: Any) -> None:
        for k in kwargs:
            if k not in names:
                raise unknown_keyword(cls.__name__, k, names)
        init(self, **kwargs)

    cls.__init__ = __init__
    return cls


@task_options
class TaskOptions:
    """Options of a task with none of its own (the base of every task's options)."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return field_names(cls)


@task_options
class DetectorOptions(TaskOptions):
    """Boxes: score and IoU thresholds in [0, 1], caps > 0, class-aware NMS unless ``class_agnostic``."""

    score_threshold: float = 0.25
    iou_threshold: float = 0.7
    max_detections: int = 300
    class_agnostic: bool = False
    max_candidates: int = 30000

    def __post_init__(self) -> None:
        _set(self, "score_threshold", checks.finite_float("score_threshold", self.score_threshold, 0.0, 1.0))
        _set(self, "iou_threshold", checks.finite_float("iou_threshold", self.iou_threshold, 0.0, 1.0))
        checks.positive_int("max_detections", self.max_detections)
        checks.positive_int("max_candidates", self.max_candidates)
        checks.flag("class_agnostic", self.class_agnostic)


@task_options
class PoseOptions(DetectorOptions):
    """As DetectorOptions (keypoints come with the kept boxes)."""


@task_options
class ObbOptions(DetectorOptions):
    """As DetectorOptions; NMS is class-offset probiou Fast-NMS on the rotated boxes (raw heads only)."""


@task_options
class SegmenterOptions(DetectorOptions):
    """DetectorOptions plus ``masks``: "full" (source pixels), "proto" (prototype resolution) or "none"."""

    masks: str = "full"

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.choice("masks", self.masks, MASK_MODES)


@task_options
class FaceOptions(DetectorOptions):
    """YuNet: OpenCV Zoo's thresholds; ``native`` None = own resolution unless ``input_size`` is given."""

    score_threshold: float = 0.9
    iou_threshold: float = 0.3
    class_agnostic: bool = True
    max_candidates: int = 5000
    native: bool | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.native is not None:
            checks.flag("native", self.native)
        checks.positive_int("max_pixels", self.max_pixels)


@task_options
class ClassifierOptions(TaskOptions):
    """``top_k`` > 0 classes per image."""

    top_k: int = 5

    def __post_init__(self) -> None:
        checks.positive_int("top_k", self.top_k)


@task_options
class SemanticOptions(TaskOptions):
    """No options yet (the label map is the whole result)."""


@task_options
class DepthOptions(TaskOptions):
    """No options yet (the depth map is the whole result)."""


@dataclass(frozen=True)
class ModelOptions:
    """How to open the file: ORT ``threads`` (None = every CPU), ``spin`` ("auto" | "off" | "on" |
    "stop" | True | False, None = ``session.DEFAULT_SPIN``), ``providers``, and ModelSpec overrides
    (``input_size=(480, 640)``, ``channel_order="bgr"``, ``names=[...]``...; any ``SPEC_FIELDS`` name),
    kept in ``overrides``. An unknown name raises ``TypeError`` naming the closest one."""

    threads: int | None = None
    spin: bool | str | None = None
    providers: Sequence[str] | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __init__(self, threads: int | None = None, spin: bool | str | None = None,
                 providers: Sequence[str] | None = None, **overrides: Any):
        for k in overrides:
            if k not in SPEC_FIELDS:
                raise unknown_keyword("ModelOptions", k, SESSION_FIELDS + SPEC_FIELDS)
        if threads is not None:
            threads = checks.positive_int("threads", threads)
        if spin is not None and not isinstance(spin, (bool, str)):
            raise checks.EdgerunTypeError(f"spin: expected 'auto', 'off', 'on', 'stop', True or False, got "
                                          f"{type(spin).__name__} {spin!r}")
        if providers is not None:
            providers = tuple(providers)
        object.__setattr__(self, "threads", threads)
        object.__setattr__(self, "spin", spin)
        object.__setattr__(self, "providers", providers)
        object.__setattr__(self, "overrides", dict(overrides))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return SESSION_FIELDS + SPEC_FIELDS

    def replace(self, **changes: Any) -> "ModelOptions":
        """A copy with ``changes`` (session fields or spec overrides)."""
        kw = {"threads": self.threads, "spin": self.spin, "providers": self.providers, **self.overrides}
        return ModelOptions(**{**kw, **changes})


def split_keywords(where: str, kwargs: Mapping[str, Any], option_names: Iterable[str]
                   ) -> tuple[dict[str, Any], ModelOptions]:
    """``kwargs`` -> (task option keywords, ModelOptions); an unknown name raises ``TypeError``."""
    option_names = tuple(option_names)
    model_names = ModelOptions.names()
    opts, model = {}, {}
    for k, v in kwargs.items():
        if k in option_names:
            opts[k] = v
        elif k in model_names:
            model[k] = v
        else:
            raise unknown_keyword(where, k, option_names + model_names)
    return opts, ModelOptions(**model)


def _set(obj, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)
