"""Pipelined streaming: capture, preprocess, inference and postprocess overlapped on threads.

    for r in edgerun.runtime.stream(model, "video.mp4"):        # every frame, in order
        print(r.index, r.age, len(r.detections))
    with StreamRunner(model, mode="latest", on_result=cb) as run:  # push API, camera software
        run.submit(nv12, pixel_format="nv12", timestamp=t)

Stages: capture (or ``submit``) -> preprocess thread (letterbox into a pooled tensor slot) ->
``workers`` inference threads (each its own ORT session of ``threads`` threads) -> postprocess
thread -> reorder (results leave in frame order) -> consumer (iterator or ``on_result`` callback,
where the optional tracker runs, in order). Queues are bounded; tensor slots, output buffers and
frame buffers are pooled, so the steady state allocates only the small result arrays.

Modes: ``every_frame`` (files: nothing dropped, the reader waits for the pipeline) and ``latest``
(live: a one-frame mailbox, a newer frame replaces an unprocessed one and the replaced frame is
counted as dropped). Accounting: every frame read gets an index and exactly one record: a result,
or (``latest``/``max_fps``) a drop (yielded only with ``emit_dropped=True``, always counted).
``stop()`` stops reading and drains in-flight frames; ``stop(drain=False)`` aborts fast.
"""
from __future__ import annotations

import collections
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from edgerun.kernels.errors import EdgerunError, EdgerunValueError

from ..session import Session, cpu_budget
from .pool import FramePool, Reorder, Slot, Stats, ensure
from .sources import Source, open_source
from .split import calibrate_split, choose_split

__all__ = ["StreamRunner", "StreamResult", "stream", "MODES", "choose_split"]

MODES = ("every_frame", "latest")
_STOP = object()


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
class _Item:
    index: int
    timestamp: float
    t_read: float
    frame: np.ndarray | None
    pixel_format: str
    slot: Slot | None = None
    geometry: Any = None
    error: str | None = None
    ms: dict = field(default_factory=dict)


class StreamRunner:
    """Runs a task object (``Detector`` & co., or a model path) over frames from a source or from
    ``submit``.

    ``mode``: "every_frame" | "latest"; ``max_fps``: pace (every_frame) or drop (latest) above it;
    ``workers``/``threads``: parallel ORT sessions x intra-op threads (default ``choose_split``,
    "calibrate" measures); ``keep_frames``: results carry the frame (``image``) for drawing;
    ``emit_dropped``: yield drop records too; ``tracker``: e.g. ``ByteTracker()``, run in order;
    ``on_result``: callback form (called in order on one thread); ``on_event``: source events;
    ``stall_timeout``: a live source that has not delivered a frame for this many seconds gets a
    ``stall`` event from a watchdog, whatever its backend does meanwhile (a blocked read included).
    """

    def __init__(self, model, *, mode: str = "every_frame", max_fps: float | None = None,
                 workers: int | str | None = None, threads: int | None = None, queue_size: int = 4,
                 keep_frames: bool = False, emit_dropped: bool = False, tracker=None,
                 max_frames: int | None = None, stall_timeout: float = 3.0,
                 on_result: Callable[[StreamResult], None] | None = None,
                 on_event: Callable[[dict], None] | None = None):
        if mode not in MODES:
            raise EdgerunValueError(f"mode: expected one of {MODES}, got {mode!r}")
        if max_fps is not None and not max_fps > 0:
            raise EdgerunValueError(f"max_fps: expected a positive number or None, got {max_fps!r}")
        if isinstance(model, (str, os.PathLike)):  # a model path: the task object from its spec
            from ..tasks.dispatch import open_model
            model = open_model(os.fspath(model))
        self.model, self.mode, self.max_fps = model, mode, max_fps
        auto = choose_split(cpu_budget(), mode)
        if workers == "calibrate":
            auto, workers = calibrate_split(model, cpu_budget()), None
        self.workers = int(workers or auto[0])
        self.threads = int(threads or (auto[1] if workers is None else max(1, cpu_budget() // self.workers)))
        self.keep_frames, self.emit_dropped, self.max_frames = keep_frames, emit_dropped, max_frames
        self.tracker, self.on_result, self.on_event = tracker, on_result, on_event
        if not stall_timeout > 0:
            raise EdgerunValueError(f"stall_timeout: expected a positive number of seconds, got {stall_timeout!r}")
        self.stall_timeout = float(stall_timeout)
        self._reading_since: float | None = None  # time.monotonic() when the pending read began
        self._stall_reported = False  # for the pending read (the source may report the same stall)
        self.events: collections.deque = collections.deque(maxlen=1000)
        self.source: Source | None = None
        self._dtype = np.float16 if model.spec.input_dtype == "float16" else np.float32
        self._sessions = self._make_sessions()
        nslots = self.workers + (1 if mode == "latest" else 2)
        self._slots: queue.Queue = queue.Queue()
        for _ in range(nslots):
            self._slots.put(Slot())
        self._tokens = threading.Semaphore(nslots + (1 if mode == "latest" else queue_size))
        self._q_in: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._mailbox: _Item | None = None
        self._mail_cv = threading.Condition()
        self._q_inf: queue.Queue = queue.Queue()
        self._q_post: queue.Queue = queue.Queue()
        self._out: queue.Queue = queue.Queue()
        self._pool = FramePool(nslots + queue_size + 2)
        self._reorder = Reorder(self._out.put)
        self._lock = threading.Lock()
        self._next_index = 0
        self._last_accept = -1e9
        self._input_closed = False
        self._stop_reading = threading.Event()
        self._abort = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stats = Stats()
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, source: Any = None, **source_options: Any) -> "StreamRunner":
        """Start the pipeline; with ``source`` (path, directory, camera index, URL or ``Source``)
        a capture thread reads it, else frames come from ``submit``."""
        if self._started:
            raise EdgerunError("StreamRunner.start: already started")
        self._started = True
        spawn = [("edgerun-pre", self._pre_loop)]
        spawn += [(f"edgerun-infer{k}", lambda s=s: self._infer_loop(s)) for k, s in enumerate(self._sessions)]
        spawn += [("edgerun-post", self._post_loop)]
        if self.on_result is not None:
            spawn.append(("edgerun-deliver", self._deliver_loop))
        if source is not None:
            self.source = source if isinstance(source, Source) else open_source(source, **source_options)
            self.source.on_event = self._event
            spawn.append(("edgerun-capture", self._capture_loop))
            if self.source.live:
                spawn.append(("edgerun-watchdog", self._watchdog_loop))
        for name, fn in spawn:
            t = threading.Thread(target=fn, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, drain: bool = True, timeout: float | None = 30.0) -> None:
        """Stop reading; with ``drain`` finish every frame already read, else abort fast."""
        self._stop_reading.set()
        if self.source is not None:
            self.source.interrupt()
        if not drain:
            self._abort.set()
            self._release_all()
        if self.source is None:
            self._close_input()
        if self.on_result is not None or not drain:
            self.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the pipeline threads (callback form: until every result is delivered)."""
        end = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(None if end is None else max(0.0, end - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def close(self) -> None:
        """Abort whatever is still running."""
        if self._started:
            self.stop(drain=False, timeout=5.0)

    def __enter__(self) -> "StreamRunner":
        if not self._started:
            self.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.stop(drain=exc_type is None)
        if self.on_result is None and exc_type is None:
            for _ in self.results():  # nobody iterates after the block: drain and discard
                pass
        self.join(30.0)

    # -- input ------------------------------------------------------------------------------------
    def submit(self, frame: np.ndarray, pixel_format: str = "bgr", timestamp: float | None = None,
               *, copy: bool = True, timeout: float | None = None) -> int:
        """Queue one raw frame (BGR/RGB/GRAY/NV12/NV21/I420/YUYV uint8, OpenCV shapes); returns its
        index. ``every_frame`` blocks while the pipeline is full (``timeout``: raise TimeoutError);
        ``latest`` never blocks. ``copy=False``: the caller keeps the buffer untouched until its result."""
        if self._input_closed:
            raise EdgerunError("StreamRunner.submit: the stream is stopped")
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
            raise EdgerunValueError(f"frame: expected a uint8 numpy array, got "
                                    f"{getattr(frame, 'dtype', type(frame).__name__)}")
        if copy:
            buf = self._pool.get(frame.shape)
            np.copyto(buf, frame)
            frame = buf
        ts = time.time() if timestamp is None else float(timestamp)
        return self._accept(frame, pixel_format, ts, time.monotonic(), timeout)

    def _accept(self, frame: np.ndarray, pixel_format: str, ts: float, t_read: float,
                timeout: float | None = None) -> int:
        with self._lock:
            index = self._next_index
            self._next_index += 1
        self._stats.count("read")
        item = _Item(index, ts, t_read, frame, pixel_format)
        if self.mode == "every_frame":
            self._pace(t_read)
            if not self._tokens.acquire(timeout=timeout):
                self._drop(item)
                raise TimeoutError(f"StreamRunner.submit: pipeline full for {timeout} s")
            self._q_in.put(item)
        elif self.max_fps and t_read - self._last_accept < 1.0 / self.max_fps:
            self._drop(item)
        else:
            self._last_accept = t_read
            with self._mail_cv:
                old, self._mailbox = self._mailbox, item
                self._mail_cv.notify()
            if old is not None:
                self._drop(old)
        return index

    def _pace(self, t_read: float) -> None:
        if self.max_fps:
            wait = self._last_accept + 1.0 / self.max_fps - time.monotonic()
            if wait > 0:
                self._stop_reading.wait(wait)
            self._last_accept = time.monotonic()

    def _drop(self, item: _Item) -> None:
        self._stats.count("dropped")
        if item.frame is not None and not self.keep_frames:
            self._pool.put(item.frame)
        rec = StreamResult(item.index, item.timestamp, time.monotonic() - item.t_read, dropped=True,
                           pixel_format=item.pixel_format)
        self._reorder.put(item.index, rec)

    def _close_input(self) -> None:
        with self._mail_cv:
            if self._input_closed:
                return
            self._input_closed = True
            self._mail_cv.notify_all()
        if self.mode == "every_frame":
            self._q_in.put(_STOP)

    def _take_input(self):
        if self.mode == "every_frame":
            return self._q_in.get()
        with self._mail_cv:
            while self._mailbox is None and not self._input_closed:
                self._mail_cv.wait()
            item, self._mailbox = self._mailbox, None
        return _STOP if item is None else item

    def _capture_loop(self) -> None:
        src = self.source
        try:
            while not self._stop_reading.is_set():
                if self.max_frames is not None and self._next_index >= self.max_frames:
                    break
                self._reading_since, self._stall_reported = time.monotonic(), False
                got = src.read(self._pool)
                self._reading_since = None
                if got is None:
                    break
                image, ts, t_read = got
                self._accept(image, src.pixel_format, ts, t_read)
        except Exception as exc:  # noqa: BLE001 - reported as an event, the pipeline drains
            self._event({"kind": "error", "detail": f"{type(exc).__name__}: {exc}"})
        finally:
            src.close()
            self._close_input()

    def _watchdog_loop(self) -> None:
        """Report a live source that delivers nothing for ``stall_timeout`` s, once per stall."""
        while not (self._stop_reading.wait(0.1) or self._input_closed):
            since = self._reading_since
            if since is not None and not self._stall_reported and time.monotonic() - since >= self.stall_timeout:
                self._stall_reported = True
                self._event({"kind": "stall", "detail": f"no frame for {time.monotonic() - since:.1f} s"})

    # -- stages -------------------------------------------------------------------------------------
    def _pre_loop(self) -> None:
        while True:
            if self.mode == "latest":
                self._tokens.acquire()
            slot = self._slots.get()
            item = self._take_input()
            if item is _STOP:
                break
            item.slot = slot
            if not self._abort.is_set():
                self._preprocess(item)
            self._q_inf.put(item)
        for _ in self._sessions:
            self._q_inf.put(_STOP)

    def _preprocess(self, item: _Item) -> None:
        t0 = time.perf_counter()
        try:
            h, w = item.frame.shape[0], item.frame.shape[1]
            if item.pixel_format in ("nv12", "nv21", "i420"):
                h = h * 2 // 3
            geo = self.model.plan(h, w)
            shape = (1, 3, geo.dst_h, geo.dst_w) if self.model.spec.layout == "nchw" else (1, geo.dst_h, geo.dst_w, 3)
            item.slot.tensor = ensure(item.slot.tensor, shape, self._dtype)
            _, item.geometry = self.model.preprocess(item.frame, item.pixel_format, out=item.slot.tensor)
        except (EdgerunError, ValueError, TypeError) as exc:
            item.error = f"preprocess: {exc}"
        item.ms["preprocess"] = (time.perf_counter() - t0) * 1e3
        if not self.keep_frames:
            self._pool.put(item.frame)
            item.frame = None

    def _infer_loop(self, session: Session) -> None:
        name = self.model.spec.input_name
        while (item := self._q_inf.get()) is not _STOP:
            if item.error is None and not self._abort.is_set():
                t0 = time.perf_counter()
                try:
                    item.slot.keep(session.run({name: item.slot.tensor}))
                except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the stream
                    item.error = f"inference: {type(exc).__name__}: {exc}"
                item.ms["inference"] = (time.perf_counter() - t0) * 1e3
            self._q_post.put(item)
        self._q_post.put(_STOP)

    def _post_loop(self) -> None:
        stops = 0
        while stops < len(self._sessions):
            item = self._q_post.get()
            if item is _STOP:
                stops += 1
                continue
            if self._abort.is_set():
                self._slots.put(item.slot)
                continue
            self._reorder.put(item.index, self._postprocess(item))
        self._out.put(_STOP)

    def _postprocess(self, item: _Item) -> StreamResult:
        det = None
        if item.error is None:
            t0 = time.perf_counter()
            try:
                det = self.model.postprocess(item.slot.outputs, item.geometry)
                item.ms["postprocess"] = (time.perf_counter() - t0) * 1e3
                det.timings = {k: item.ms.get(k, 0.0) for k in ("preprocess", "inference", "postprocess")}
                det.names = self.model.spec.names
            except (EdgerunError, ValueError, TypeError) as exc:
                item.error = f"postprocess: {exc}"
        self._slots.put(item.slot)
        src = self.source.name if self.source is not None else ""
        return StreamResult(item.index, item.timestamp, 0.0, det, item.error, image=item.frame,
                            pixel_format=item.pixel_format, source=src, t_read=item.t_read)

    # -- output ---------------------------------------------------------------------------------------
    def results(self, timeout: float | None = None) -> Iterator[StreamResult]:
        """Results in frame order until the stream ends (``timeout``: max wait per result)."""
        while True:
            rec = self._get(timeout)
            if rec is _STOP:
                self._out.put(_STOP)  # later calls end at once too
                return
            rec = self._finish(rec)
            if rec is not None:
                yield rec

    def _get(self, timeout: float | None):
        """Wait in short slices: a signal may land on another thread, and Python runs handlers
        only when the main thread executes bytecode (so Ctrl-C/SIGTERM stay responsive)."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = 0.2 if end is None else min(0.2, end - time.monotonic())
            try:
                return self._out.get(timeout=max(wait, 0.0))
            except queue.Empty:
                if end is not None and time.monotonic() >= end:
                    raise TimeoutError(f"StreamRunner.results: no result for {timeout} s") from None

    def _deliver_loop(self) -> None:
        for rec in self.results():
            try:
                self.on_result(rec)
            except Exception as exc:  # noqa: BLE001 - a host callback bug must not kill the stream
                self._event({"kind": "callback_error", "detail": f"{type(exc).__name__}: {exc}"})

    def _finish(self, rec: StreamResult) -> StreamResult | None:
        """In order, at the consumer: age, tracker, statistics, backpressure token."""
        if rec.dropped:
            return rec if self.emit_dropped else None
        if not self._abort.is_set():
            self._tokens.release()
        rec.age = time.monotonic() - rec.t_read
        if self.tracker is not None and rec.detections is not None:
            rec.detections = self.tracker.update(rec.detections)
        self._stats.record(rec)
        return rec

    def _release_all(self) -> None:
        for _ in range(64):
            self._tokens.release()

    def add_event(self, kind: str, detail: str = "") -> None:
        """Record an event of the host's (e.g. a failed output) with the source's events."""
        self._event({"kind": kind, "detail": detail})

    def _event(self, event: dict) -> None:
        if event.get("kind") == "stall" and "source" in event and self._stall_reported:
            return  # the watchdog already reported this stall
        event.setdefault("time", time.time())
        self.events.append(event)
        self._stats.event(event)
        if self.on_event is not None:
            self.on_event(event)

    def stats(self) -> dict:
        """Frames read/processed/dropped, fps, age percentiles (ms), errors, reconnects, and
        ``frame_buffers``: frame buffers allocated so far (flat in steady state)."""
        return {**self._stats.snapshot(), "frame_buffers": self._pool.allocated}

    def _make_sessions(self) -> list[Session]:
        base = self.model.session
        if self.workers == 1 and self.threads == base.threads:
            return [base]
        return [Session(base.path, threads=self.threads, spin=base.spin) for _ in range(self.workers)]


def stream(model, source: Any, **options: Any) -> Iterator[StreamResult]:
    """Iterate over ``StreamResult`` for ``source`` (path, directory, camera index, URL, Source).
    Options: StreamRunner's (mode, max_fps, workers, threads, tracker, ...) and open_source's."""
    runner_keys = ("mode", "max_fps", "workers", "threads", "queue_size", "keep_frames",
                   "emit_dropped", "tracker", "on_event", "max_frames", "stall_timeout")
    kw = {k: options.pop(k) for k in list(options) if k in runner_keys}
    src = source if isinstance(source, Source) else open_source(source, **options)
    kw.setdefault("mode", "latest" if src.live else "every_frame")
    runner = StreamRunner(model, **kw).start(src)
    try:
        yield from runner.results()
    finally:
        runner.stop(drain=False, timeout=10.0)
