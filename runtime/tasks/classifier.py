"""Classifier: image in, top-k classes out (resize-short + centre-crop, softmax and top-k in Numba).

Shares the task base's stages (plan, letterbox into a per-thread buffer, ORT run); only the head
differs. Models without metadata that look like ImageNet classifiers ((N, 3, H, W) in, (N, C)
out) get torchvision's conventions, reported in ``spec.guessed`` (see ``spec._guess_classify``).
"""
from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from edgerun.kernels.preprocess import Geometry
from edgerun.kernels.topk import softmax, topk

from ..results import Classifications
from ..session import ModelError, Session
from ..spec import ModelSpec
from .base import Task
from .options import ClassifierOptions

__all__ = ["Classifier"]


@functools.lru_cache(maxsize=1)
def _imagenet_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names shipped in ``runtime/data/imagenet1k.txt`` (see its .md)."""
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "imagenet1k.txt")
    with open(path, encoding="utf-8") as f:
        return tuple(line.rstrip("\n") for line in f)


class Classifier(Task):
    """An image classifier on ONNX Runtime. ``classify(image)`` -> ``Classifications`` (top-k).

    ``Classifier.from_path(path, top_k=5, threads=None, spin=None, providers=None, **spec_overrides)``
    (e.g. ``softmax=False``). Thread-safe like Detector; ``run``/``run_batch`` are the task base's.
    """

    Options = ClassifierOptions
    TASK = "classify"

    def __init__(self, session: Session, spec: ModelSpec, options: ClassifierOptions | None = None):
        if spec.head != "classify" or spec.task != "classify":
            raise ModelError(f"{session.path}: task {spec.task!r} / head {spec.head!r} is not a classifier")
        out = session.outputs[0].shape
        if len(out) != 2 or (isinstance(out[1], int) and out[1] != spec.num_classes):
            raise ModelError(f"{session.path}: expected a (N, {spec.num_classes}) output, got {out}; "
                             "override num_classes or open the model with the right task")
        if not spec.names and spec.num_classes == len(_imagenet_names()):  # an ImageNet-1k model
            spec = dataclasses.replace(spec, names=_imagenet_names(), guessed=tuple(sorted({*spec.guessed, "names"})))
        super().__init__(session, spec, options)
        self.top_k = self.options.top_k

    def postprocess(self, outputs: list[np.ndarray], geometry: Geometry, batch_index: int = 0
                    ) -> Classifications:
        """Raw (N, C) output -> top-k of one image (softmax first when the spec says logits)."""
        row = np.asarray(outputs[0][batch_index], np.float32)
        probs = softmax(row) if self.spec.softmax else row.copy()
        cls, conf = topk(probs, self.top_k)
        return Classifications(cls, conf, probs, image_shape=(geometry.src_h, geometry.src_w))

    def classify(self, image: np.ndarray, pixel_format: str = "bgr") -> Classifications:
        """Classify one frame (same pixel formats as ``Task.run``)."""
        return self.run(image, pixel_format)

    def __repr__(self) -> str:
        s = self.spec
        return (f"Classifier(input={s.input_size}, classes={s.num_classes}, resize={s.resize}"
                f"({s.resize_short}), softmax={s.softmax}, top_k={self.top_k})")
