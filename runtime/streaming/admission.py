"""Which frames enter the stream pipeline, per mode (the runner numbers and counts them first).

- ``every_frame``: a bounded queue; a frame waits for a backpressure token (so the reader waits for
  the pipeline, nothing is dropped) and, with ``max_fps``, for its turn.
- ``latest``: a one-frame mailbox; a newer frame replaces an unprocessed one, and the replaced frame
  (or one arriving faster than ``max_fps``) is handed to ``drop``.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable

from .stages import FrameItem

__all__ = ["Admission", "STOP"]

STOP = object()  # what ``take`` returns once the input is closed and empty


class Admission:
    """Frames from the reader (or ``submit``) to the preprocess thread, by the runner's mode.
    ``tokens``: the runner's backpressure semaphore (``every_frame`` takes one per frame here);
    ``stop``: set when reading stops (ends a ``max_fps`` wait early)."""

    def __init__(self, mode: str, max_fps: float | None, queue_size: int, tokens: threading.Semaphore,
                 drop: Callable[[FrameItem], None], stop: threading.Event):
        self.mode, self.max_fps = mode, max_fps
        self._tokens, self._drop, self._stop = tokens, drop, stop
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._mailbox: FrameItem | None = None
        self._cv = threading.Condition()
        self._last_accept = -1e9
        self.closed = False

    def offer(self, item: FrameItem, timeout: float | None = None) -> None:
        """Admit ``item`` (or drop it); ``every_frame`` raises TimeoutError after ``timeout`` s
        without a token (the frame is dropped)."""
        if self.mode == "every_frame":
            self._pace()
            if not self._tokens.acquire(timeout=timeout):
                self._drop(item)
                raise TimeoutError(f"StreamRunner.submit: pipeline full for {timeout} s")
            self._queue.put(item)
        elif self.max_fps and item.t_read - self._last_accept < 1.0 / self.max_fps:
            self._drop(item)
        else:
            self._last_accept = item.t_read
            with self._cv:
                old, self._mailbox = self._mailbox, item
                self._cv.notify()
            if old is not None:
                self._drop(old)

    def _pace(self) -> None:
        if self.max_fps:
            wait = self._last_accept + 1.0 / self.max_fps - time.monotonic()
            if wait > 0:
                self._stop.wait(wait)
            self._last_accept = time.monotonic()

    def close(self) -> None:
        """No more frames: ``take`` returns ``STOP`` once the admitted ones are taken."""
        with self._cv:
            if self.closed:
                return
            self.closed = True
            self._cv.notify_all()
        if self.mode == "every_frame":
            self._queue.put(STOP)

    def take(self):
        """The next admitted frame (blocking), or ``STOP``."""
        if self.mode == "every_frame":
            return self._queue.get()
        with self._cv:
            while self._mailbox is None and not self.closed:
                self._cv.wait()
            item, self._mailbox = self._mailbox, None
        return STOP if item is None else item
