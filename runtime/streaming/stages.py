"""What the stream's stage threads do to one frame, through the task's own stages (``tasks/base.py``).

``FrameItem`` is one frame on its way through the pipeline; ``StreamResult`` is its record. Each
stage function times itself into ``item.ms`` under the task's ``STAGES`` names and turns a failure
into ``item.error`` (one bad frame never stops a stream). The geometry is planned once per frame,
in ``preprocess``, and travels with the item to ``postprocess``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgerun.kernels.errors import EdgerunError

from ..session import Session
from ..tasks.base import STAGES, stamp
from .pool import Slot, ensure

__all__ = ["StreamResult", "FrameItem", "preprocess", "infer", "postprocess"]


@dataclass
class StreamResult:
    """One frame's record. ``age`` is seconds from capture (or ``submit``) to this result."""

    index: int
    timestamp: float
    age: float
    detections: Any = None
    error: str | None = None
    dropped: bool = False
    image: np.ndarray | None = None
    pixel_format: str = "bgr"
    source: str = ""
    t_read: float = field(default=0.0, repr=False)  # time.monotonic() at capture

    @property
    def ok(self) -> bool:
        return self.error is None and not self.dropped


@dataclass
class FrameItem:
    """A frame in flight: its buffer, pooled tensor slot, geometry, error and stage times (ms)."""

    index: int
    timestamp: float
    t_read: float
    frame: np.ndarray | None
    pixel_format: str
    slot: Slot | None = None
    geometry: Any = None
    error: str | None = None
    ms: dict = field(default_factory=dict)


def preprocess(task, item: FrameItem) -> None:
    """Plan the frame once and letterbox it into the item's slot tensor (reshaped when needed)."""
    t0 = time.perf_counter()
    try:
        geo = task.geometry(item.frame, item.pixel_format)
        item.slot.tensor = ensure(item.slot.tensor, task.tensor_shape(1, geo), task.tensor_dtype)
        _, item.geometry = task.preprocess(item.frame, item.pixel_format, out=item.slot.tensor,
                                           geometry=geo)
    except Exception as exc:  # noqa: BLE001 - one bad frame (or a bug) must not kill the stage thread
        item.error = f"preprocess: {_reason(exc)}"
    item.ms["preprocess"] = (time.perf_counter() - t0) * 1e3


def infer(task, session: Session, item: FrameItem) -> None:
    """Run the model on ``session`` (a worker's own); the outputs are copied into the slot."""
    t0 = time.perf_counter()
    try:
        item.slot.keep(task.infer(item.slot.tensor, session))
    except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the stream
        item.error = f"inference: {type(exc).__name__}: {exc}"
    item.ms["inference"] = (time.perf_counter() - t0) * 1e3


def postprocess(task, item: FrameItem):
    """The task's result for the item (its ``timings`` from the three stages), or None on error."""
    t0 = time.perf_counter()
    try:
        det = task.postprocess(item.slot.outputs, item.geometry)
    except Exception as exc:  # noqa: BLE001 - a dead stage thread would hang the stream
        item.error = f"postprocess: {_reason(exc)}"
        return None
    item.ms["postprocess"] = (time.perf_counter() - t0) * 1e3
    return stamp(det, [item.ms.get(k, 0.0) for k in STAGES], task.spec.names)


def _reason(exc: Exception) -> str:
    """The message of an expected input error; type and message of anything else (a bug shows)."""
    return str(exc) if isinstance(exc, (EdgerunError, ValueError, TypeError)) else f"{type(exc).__name__}: {exc}"
