"""Frames for benchmarks: encoded images or video decoded per iteration (a timed ``decode`` stage),
or camera buffers (NV12, YUYV, ...) converted once up front (no decode stage: a camera hands them over).
Decoding and video reading go through ``runtime/sources.py`` (``decode_image``, ``VideoReader``).
"""
from __future__ import annotations

import os
import time

import numpy as np

from edgerun.kernels.preprocess import PIXEL_FORMATS

from ..sources import IMAGE_EXTS, ImageError, VideoReader, decode_image, expand_source, is_video

__all__ = ["FrameSource", "to_pixel_format", "PIXEL_FORMATS"]

_PRELOAD_VIDEO_FRAMES = 64  # camera-format runs from a video cycle over this many frames


def to_pixel_format(bgr: np.ndarray, fmt: str) -> np.ndarray:
    """A BGR uint8 image as a camera would deliver it in ``fmt`` (OpenCV's buffer shapes;
    YUV is BT.601 limited range, as cv2's ``COLOR_BGR2YUV_I420``). Odd sizes are cropped to even."""
    import cv2

    if fmt == "bgr":
        return bgr
    if fmt == "rgb":
        return np.ascontiguousarray(bgr[..., ::-1])
    if fmt == "gray":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    h, w = bgr.shape[0] & ~1, bgr.shape[1] & ~1
    i420 = cv2.cvtColor(np.ascontiguousarray(bgr[:h, :w]), cv2.COLOR_BGR2YUV_I420)
    y = i420[:h]
    u = i420[h:h + h // 4].reshape(h // 2, w // 2)
    v = i420[h + h // 4:].reshape(h // 2, w // 2)
    if fmt == "i420":
        return i420
    if fmt in ("nv12", "nv21"):
        uv = np.stack([u, v] if fmt == "nv12" else [v, u], axis=-1).reshape(h // 2, w)
        return np.ascontiguousarray(np.concatenate([y, uv], axis=0))
    if fmt == "yuyv":
        out = np.empty((h, w, 2), np.uint8)
        out[..., 0] = y
        out[:, 0::2, 1] = np.repeat(u, 2, axis=0)
        out[:, 1::2, 1] = np.repeat(v, 2, axis=0)
        return out
    raise ValueError(f"pixel_format: expected one of {PIXEL_FORMATS}, got {fmt!r}")


class FrameSource:
    """``read(i)`` -> (frame for iteration i, decode ms or None). Calling ``read`` twice with the same
    ``i`` gives the same frame (peers measured in one run see the same inputs)."""

    def __init__(self, source: str, pixel_format: str = "bgr"):
        self.path, self.fmt = source, pixel_format
        files = expand_source(source)
        if not files:
            raise ImageError(f"no images or videos found in {source}")
        videos = [f for f in files if is_video(f)]
        if videos and len(files) > 1:
            raise ImageError(f"benchmark source: one video, or images only; {source} holds "
                             f"{len(videos)} video(s) among {len(files)} files")
        self.kind = "video" if videos else "images"
        self._reader: VideoReader | None = None
        self._last: tuple[int, np.ndarray, float | None] | None = None
        if self.kind == "video":
            self._video = files[0]
            first, _ = self._read_video()
            self.shape = first.shape
            self._rewind()
        else:
            files = [f for f in files if os.path.splitext(f)[1].lower() in IMAGE_EXTS]
            self._blobs = [np.fromfile(f, np.uint8) for f in files]
            self.shape = decode_image(self._blobs[0], files[0]).shape
        self._frames: list[np.ndarray] | None = None
        if pixel_format != "bgr":
            self._frames = self._preload()

    @property
    def decodes(self) -> bool:
        """True when every iteration decodes an encoded frame (a ``decode`` stage is measured)."""
        return self._frames is None

    def read(self, i: int) -> tuple[np.ndarray, float | None]:
        if self._frames is not None:
            return self._frames[i % len(self._frames)], None
        if self.kind == "video":
            if self._last is None or self._last[0] != i:
                img, ms = self._read_video()
                self._last = (i, img, ms)
            return self._last[1], self._last[2]
        return self._decode(self._blobs[i % len(self._blobs)])

    def _decode(self, blob: np.ndarray) -> tuple[np.ndarray, float]:
        t = time.perf_counter()
        img = decode_image(blob, self.path)
        return img, (time.perf_counter() - t) * 1e3

    def _rewind(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._reader = VideoReader(self._video)

    def _read_video(self) -> tuple[np.ndarray, float]:
        if self._reader is None:
            self._rewind()
        t = time.perf_counter()
        img = self._reader.read()
        ms = (time.perf_counter() - t) * 1e3
        if img is None:  # end of clip: rewind (reopen) and read again
            self._rewind()
            t = time.perf_counter()
            img = self._reader.read()
            ms = (time.perf_counter() - t) * 1e3
            if img is None:
                raise ImageError(f"{self._video}: video has no decodable frames")
        return img, ms

    def _preload(self) -> list[np.ndarray]:
        if self.kind == "video":
            bgr = [self._read_video()[0] for _ in range(_PRELOAD_VIDEO_FRAMES)]
        else:
            bgr = [self._decode(b)[0] for b in self._blobs]
        return [to_pixel_format(b, self.fmt) for b in bgr]

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
