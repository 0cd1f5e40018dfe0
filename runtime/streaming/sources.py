"""Frame sources for streaming: video files, image directories/globs, cameras and network URLs.

Network URLs (rtsp/http/https/tcp/udp/rtmp) go through OpenCV's FFmpeg backend with explicit open
and read timeouts, so a dead camera never blocks for FFmpeg's default (minutes). Live sources
(cameras, URLs) detect stalls, reconnect with exponential backoff and survive resolution changes;
everything that happens is an event dict ``{"kind", "detail", "time"}`` passed to ``on_event``:
``opened``, ``stall``, ``disconnected``, ``reconnecting``, ``reconnected``, ``resolution``,
``gave_up``, ``bad_file``, ``bad_frame``, ``end``.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

import numpy as np

from edgerun.kernels.errors import EdgerunValueError

from ..sources import IMAGE_EXTS, ImageError, decode_image, expand_source, is_video, read_image

__all__ = ["Source", "VideoSource", "ImageSource", "open_source", "URL_SCHEMES", "RTSP_TRANSPORTS"]

URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "tcp", "udp", "srt")
RTSP_TRANSPORTS = ("tcp", "udp")  # RTP over the RTSP TCP connection, or over UDP ports
FFMPEG_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"  # read by OpenCV's FFmpeg backend at every open
_OPTIONS_LOCK = threading.Lock()  # the variable is process-wide: one open with extra options at a time
Read = tuple[np.ndarray, float, float]  # image, timestamp (s), time.monotonic() at read
MAX_BAD_PACKETS = 30  # undecodable JPEG packets in a row before a live MJPEG source reconnects


class Source:
    """Base: ``read(pool)`` -> (image, timestamp, t_read) or None at the end."""

    live = False
    pixel_format = "bgr"

    def __init__(self, name: str):
        self.name = name
        self._on_event: Callable[[dict], None] | None = None
        self._early: list[dict] = []  # events before a handler was attached (e.g. "opened")
        self._interrupted = threading.Event()
        self._shape: tuple | None = None

    def read(self, pool=None) -> Read | None:
        raise NotImplementedError

    def interrupt(self) -> None:
        """Ask a blocked ``read`` (reconnect wait) to give up soon; safe from any thread."""
        self._interrupted.set()

    def close(self) -> None:
        pass

    @property
    def on_event(self) -> Callable[[dict], None] | None:
        return self._on_event

    @on_event.setter
    def on_event(self, handler: Callable[[dict], None] | None) -> None:
        """Attach a handler; events emitted before (while opening) are replayed to it."""
        self._on_event = handler
        early, self._early = self._early, []
        for e in early if handler is not None else ():
            handler(e)

    def event(self, kind: str, detail: str = "") -> None:
        e = {"kind": kind, "detail": detail, "source": self.name, "time": time.time()}
        if self._on_event is None:
            self._early.append(e)
        else:
            self._on_event(e)

    def _check_shape(self, image: np.ndarray) -> None:
        if self._shape is not None and image.shape != self._shape:
            old, new = self._shape, image.shape
            self.event("resolution", f"{old[1]}x{old[0]} -> {new[1]}x{new[0]}")
        self._shape = image.shape


class ImageSource(Source):
    """Image files in order (a directory, a glob or one file); unreadable files are skipped."""

    def __init__(self, name: str, files: list[str]):
        super().__init__(name)
        self._files = list(files)
        self._i = 0

    @property
    def files(self) -> tuple[str, ...]:
        """The image files in order; a frame's timestamp is its file's position here."""
        return tuple(self._files)

    def read(self, pool=None) -> Read | None:
        while self._i < len(self._files) and not self._interrupted.is_set():
            path = self._files[self._i]
            self._i += 1
            try:
                image = read_image(path)
            except ImageError as exc:
                self.event("bad_file", str(exc))
                continue
            self._check_shape(image)
            return image, float(self._i - 1), time.monotonic()
        return None


class VideoSource(Source):
    """A cv2.VideoCapture: a file (not live), a camera index or a URL (live, reconnecting).

    A URL read that gets no frame for ``read_timeout`` s is a stall: ``stall`` + ``disconnected``
    events, then reconnection attempts after ``backoff[0]`` s doubling up to ``backoff[1]`` s, each
    open bounded by ``open_timeout``. With the defaults (3 s, 3 s, 0.25 -> 5 s) a stall is detected
    3 s after the last frame and a camera that comes back is reopened at most
    ``open_timeout + backoff[1]`` = 8 s after it is reachable again.

    ``rtsp_transport`` ("tcp" or "udp", rtsp:// URLs only): how RTP reaches us; None keeps
    OpenCV's choice (TCP, unless $OPENCV_FFMPEG_CAPTURE_OPTIONS says otherwise).
    """

    def __init__(self, target: str | int, *, live: bool | None = None, open_timeout: float = 3.0,
                 read_timeout: float = 3.0, reconnect: bool | None = None,
                 max_reconnects: int | None = None, backoff: tuple[float, float] = (0.25, 5.0),
                 stall_timeout: float | None = None, rtsp_transport: str | None = None):
        super().__init__(str(target))
        self.target = target
        scheme = target.split("://", 1)[0].lower() if isinstance(target, str) else ""
        self.is_url = scheme in URL_SCHEMES
        if rtsp_transport is not None and (rtsp_transport not in RTSP_TRANSPORTS or scheme not in ("rtsp", "rtsps")):
            raise EdgerunValueError(f"rtsp_transport: expected one of {', '.join(RTSP_TRANSPORTS)} for an "
                                    f"rtsp:// URL, got {rtsp_transport!r} for {target!r}")
        self.rtsp_transport = rtsp_transport
        self.live = (not isinstance(target, str) or self.is_url) if live is None else live
        self.open_timeout, self.read_timeout = float(open_timeout), float(read_timeout)
        self.reconnect = (self.is_url or isinstance(target, int)) if reconnect is None else reconnect
        self.max_reconnects = max_reconnects
        self.backoff = backoff
        self.stall_timeout = stall_timeout if stall_timeout is not None else read_timeout / 2
        self.reconnects = 0
        self._cap = None
        self._raw_jpeg = False
        self._t0 = time.time()
        if not self._open():
            raise ImageError(f"cannot open video source {target!r} (timeout {self.open_timeout} s)")

    def _open(self) -> bool:
        import cv2

        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000)]
        if isinstance(self.target, int):
            cap = cv2.VideoCapture(self.target)
        elif self.rtsp_transport is not None:
            with _OPTIONS_LOCK:  # the user's own options stay; ours comes last and wins
                old = os.environ.get(FFMPEG_OPTIONS)
                os.environ[FFMPEG_OPTIONS] = "|".join(filter(None, (old, f"rtsp_transport;{self.rtsp_transport}")))
                try:
                    cap = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, params)
                finally:
                    if old is None:
                        del os.environ[FFMPEG_OPTIONS]
                    else:
                        os.environ[FFMPEG_OPTIONS] = old
        else:
            cap = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            return False
        self._cap = cap
        # Live MJPEG (HTTP cameras): take the JPEG packets and decode them here. OpenCV's FFmpeg
        # path silently stretches every frame to the size the stream opened with, so a mid-stream
        # resolution change would go unseen (and distort the image); imdecode keeps each frame's size.
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little")
        self._raw_jpeg = bool(self.is_url and fourcc == b"MJPG" and cap.set(cv2.CAP_PROP_FORMAT, -1))
        self.event("opened", f"{cap.get(cv2.CAP_PROP_FRAME_WIDTH):.0f}x{cap.get(cv2.CAP_PROP_FRAME_HEIGHT):.0f}")
        return True

    @property
    def fps(self) -> float:
        import cv2
        fps = self._cap.get(cv2.CAP_PROP_FPS) if self._cap is not None else 0.0
        return fps if fps and 0 < fps < 1000 else 25.0

    def read(self, pool=None) -> Read | None:
        while not self._interrupted.is_set():
            got = self._read_once(pool)
            if got is not None:
                return got
            if not self.reconnect or not self._reconnect():
                self.event("end", self.name)
                return None
        return None

    def _read_once(self, pool) -> Read | None:
        import cv2

        if self._cap is None:
            return None
        for _ in range(MAX_BAD_PACKETS):
            buf = pool.get() if pool is not None and not self._raw_jpeg else None
            t0 = time.monotonic()
            ok, image = self._cap.read(buf) if buf is not None else self._cap.read()
            t1 = time.monotonic()
            if t1 - t0 > self.stall_timeout and self.live:
                self.event("stall", f"read blocked {t1 - t0:.2f} s")
            if not ok or image is None:
                if pool is not None:
                    pool.put(buf)
                return None
            if not self._raw_jpeg:
                break
            try:
                image = decode_image(image.reshape(-1), "JPEG packet")
                break
            except ImageError as exc:
                self.event("bad_frame", f"{exc}; skipped")
        else:
            self.event("bad_frame", f"{MAX_BAD_PACKETS} undecodable packets in a row: reconnecting")
            return None
        self._check_shape(image)
        if self.live:
            ts = time.time()
        else:
            ts = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        return image, ts, t1

    def _reconnect(self) -> bool:
        """Reopen with exponential backoff until success, ``max_reconnects`` or ``interrupt``."""
        self.event("disconnected", self.name)
        self._release()
        delay, attempt = self.backoff[0], 0
        while not self._interrupted.is_set():
            if self.max_reconnects is not None and attempt >= self.max_reconnects:
                self.event("gave_up", f"after {attempt} attempt(s)")
                return False
            attempt += 1
            self.event("reconnecting", f"attempt {attempt} in {delay:.2f} s")
            if self._interrupted.wait(delay):
                return False
            if self._open():
                self.reconnects += 1
                self.event("reconnected", f"attempt {attempt}")
                return True
            delay = min(delay * 2, self.backoff[1])
        return False

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def close(self) -> None:
        self._release()


def open_source(source: Any, **options: Any) -> Source:
    """A camera index (int or digits), URL, video file, image file, directory or glob -> Source.
    Options (VideoSource): live, open_timeout, read_timeout, reconnect, max_reconnects, backoff,
    rtsp_transport."""
    if isinstance(source, Source):
        return source
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return VideoSource(int(source), **options)
    if not isinstance(source, (str, os.PathLike)):
        raise EdgerunValueError(f"source: expected a path, URL or camera index, got {type(source).__name__}")
    source = os.fspath(source)
    if "://" in source:
        return VideoSource(source, **options)
    files = expand_source(source)
    videos = [f for f in files if is_video(f)]
    if len(files) == 1 and videos:
        return VideoSource(files[0], **options)
    images = [f for f in files if os.path.splitext(f)[1].lower() in IMAGE_EXTS]
    if not images:
        raise ImageError(f"no images or video found in {source} (a directory of videos: stream one file)")
    return ImageSource(source, images)
