"""Streaming bookkeeping: reusable frame buffers, tensor/output slots, in-order release, stats."""
from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable

import numpy as np

__all__ = ["FramePool", "Slot", "Reorder", "Stats", "ensure"]


def ensure(buf: np.ndarray | None, shape: tuple, dtype) -> np.ndarray:
    """``buf`` if it already has ``shape`` and ``dtype``, else a new array."""
    if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
        return np.empty(shape, dtype)
    return buf


class FramePool:
    """Free uint8 frame buffers of the current frame shape (a new shape empties the pool)."""

    def __init__(self, capacity: int = 8):
        self.capacity = capacity
        self._free: list[np.ndarray] = []
        self._shape: tuple | None = None
        self._lock = threading.Lock()
        self.allocated = 0

    def get(self, shape: tuple | None = None) -> np.ndarray | None:
        """A free buffer of ``shape`` (default: the last shape seen); None if no shape known yet."""
        with self._lock:
            shape = tuple(shape) if shape is not None else self._shape
            if shape is None:
                return None
            if shape != self._shape:
                self._free.clear()
                self._shape = shape
            if self._free:
                return self._free.pop()
            self.allocated += 1
        return np.empty(shape, np.uint8)

    def put(self, buf: np.ndarray | None) -> None:
        """Return a buffer (dropped if its shape is stale or the pool is full)."""
        if buf is None:
            return
        with self._lock:
            if buf.shape == self._shape and len(self._free) < self.capacity and buf.base is None:
                self._free.append(buf)
            elif self._shape is None:
                self._shape = buf.shape


class Slot:
    """One frame in flight: its input tensor and a private copy of the model outputs."""

    def __init__(self) -> None:
        self.tensor: np.ndarray | None = None
        self.outputs: list[np.ndarray] = []

    def keep(self, outputs: list[np.ndarray]) -> None:
        """Copy ORT's (per-thread, reused) outputs into this slot's buffers."""
        if len(self.outputs) != len(outputs):
            self.outputs = [None] * len(outputs)  # type: ignore[list-item]
        for i, o in enumerate(outputs):
            self.outputs[i] = ensure(self.outputs[i], o.shape, o.dtype)
            np.copyto(self.outputs[i], o)


class Reorder:
    """Releases records strictly in index order."""

    def __init__(self, deliver: Callable[[Any], None]):
        self._deliver, self._next, self._pending = deliver, 0, {}
        self._lock = threading.Lock()

    def put(self, index: int, rec) -> None:
        with self._lock:
            self._pending[index] = rec
            while self._next in self._pending:
                self._deliver(self._pending.pop(self._next))
                self._next += 1


class Stats:
    """Counters and a sliding window of result ages and times."""

    def __init__(self, window: int = 512):
        self.read = self.dropped = self.processed = self.errors = self.reconnects = 0
        self._ages: collections.deque = collections.deque(maxlen=window)
        self._times: collections.deque = collections.deque(maxlen=window)
        self._lock = threading.Lock()

    def count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def record(self, rec) -> None:
        with self._lock:
            self.processed += 1
            self.errors += rec.error is not None
            self._ages.append(rec.age)
            self._times.append(time.monotonic())

    def event(self, event: dict) -> None:
        self.reconnects += event.get("kind") == "reconnected"

    def snapshot(self) -> dict:
        with self._lock:
            ages = np.sort(np.array(self._ages, np.float64)) * 1e3
            times = list(self._times)
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        pct = {f"age_p{p}_ms": round(float(np.percentile(ages, p)), 2) if ages.size else None for p in (50, 90, 99)}
        return {"read": self.read, "processed": self.processed, "dropped": self.dropped,
                "errors": self.errors, "reconnects": self.reconnects, "fps": round(fps, 2), **pct}
