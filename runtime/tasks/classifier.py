"""Classifier: image in, top-k classes out (resize-short + centre-crop, softmax and top-k in Numba).

Reuses Detector's preprocessing stages (plan, letterbox into a per-thread buffer, ORT run); only the
head differs. Models without metadata that look like ImageNet classifiers ((N, 3, H, W) in, (N, C)
out) get torchvision's conventions, reported in ``spec.guessed`` (see ``spec._guess_classify``).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import threading
from typing import Any, Sequence

import numpy as np

from edgerun.kernels import _check
from edgerun.kernels.preprocess import Geometry
from edgerun.kernels.topk import softmax, topk

from .detector import Detector
from ..results import Classifications
from ..session import ModelError, Session
from ..spec import ModelSpec, resolve_spec

__all__ = ["Classifier"]


@functools.lru_cache(maxsize=1)
def _imagenet_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names shipped in ``runtime/data/imagenet1k.txt`` (see its .md)."""
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "imagenet1k.txt")
    with open(path, encoding="utf-8") as f:
        return tuple(line.rstrip("\n") for line in f)


class Classifier(Detector):
    """An image classifier on ONNX Runtime. ``classify(image)`` -> ``Classifications`` (top-k).

    Thread-safe like Detector. ``detect``/``detect_batch`` are aliases kept for the common CLI path.
    """

    def __init__(self, session: Session, spec: ModelSpec, *, top_k: int = 5):
        if spec.head != "classify" or spec.task != "classify":
            raise ModelError(f"{session.path}: task {spec.task!r} / head {spec.head!r} is not a classifier")
        out = session.outputs[0].shape
        if len(out) != 2 or (isinstance(out[1], int) and out[1] != spec.num_classes):
            raise ModelError(f"{session.path}: expected a (N, {spec.num_classes}) output, got {out}; "
                             "override num_classes or open the model with the right task")
        if not spec.names and spec.num_classes == len(_imagenet_names()):  # an ImageNet-1k model
            spec = dataclasses.replace(spec, names=_imagenet_names(), guessed=tuple(sorted({*spec.guessed, "names"})))
        self.session = session
        self.spec = spec
        self.top_k = _check.positive_int("top_k", top_k)
        self._dtype = np.float16 if spec.input_dtype == "float16" else np.float32
        self._local = threading.local()

    @classmethod
    def from_path(cls, path: str, top_k: int = 5, *, threads: int | None = None, spin: bool = False,
                  providers: Sequence[str] | None = None, **spec_overrides: Any) -> "Classifier":
        """Open an ONNX classifier; ``spec_overrides`` replace ModelSpec fields (e.g. ``softmax=False``)."""
        session = Session(str(path), threads=threads, spin=spin, providers=providers)
        spec = resolve_spec(session.metadata, session.inputs, session.outputs, spec_overrides)
        return cls(session, spec, top_k=top_k)

    def postprocess(self, outputs: list[np.ndarray], geometry: Geometry, batch_index: int = 0
                    ) -> Classifications:
        """Raw (N, C) output -> top-k of one image (softmax first when the spec says logits)."""
        row = np.asarray(outputs[0][batch_index], np.float32)
        probs = softmax(row) if self.spec.softmax else row.copy()
        cls, conf = topk(probs, self.top_k)
        return Classifications(cls, conf, probs, image_shape=(geometry.src_h, geometry.src_w))

    def classify(self, image: np.ndarray, pixel_format: str = "bgr") -> Classifications:
        """Classify one frame (same pixel formats as ``Detector.detect``)."""
        return self.detect(image, pixel_format)

    def __repr__(self) -> str:
        s = self.spec
        return (f"Classifier(input={s.input_size}, classes={s.num_classes}, resize={s.resize}"
                f"({s.resize_short}), softmax={s.softmax}, top_k={self.top_k})")
