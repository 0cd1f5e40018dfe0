"""Reading images and videos: the one image decoder and the one file-frame reader of edgerun.

- ``decode_image(bytes, name)``: encoded bytes -> BGR, with the pixel limit checked on the header
  before decoding and OpenCV's reason in the error (``read_image`` = file bytes + ``decode_image``).
- ``file_frames(path)``: one image file -> one ``Frame``, one video -> every frame in order
  (``video_frames``, over ``VideoReader``); ``iter_frames(source)`` does that for a file,
  directory or glob.

``edgerun predict``, ``edgerun batch``, the benchmarks' ``FrameSource`` and the streams'
``ImageSource`` read through these. A file that cannot be read comes out as a ``Frame`` with
``error`` set, so one bad file never stops a run.
"""
from __future__ import annotations

import glob
import os
import re
import stat
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from edgerun.kernels.errors import EdgerunError, EdgerunValueError

__all__ = ["Frame", "ImageError", "read_image", "iter_frames", "file_frames", "video_frames",
           "VideoReader",
           "expand_source", "is_video", "IMAGE_EXTS", "VIDEO_EXTS", "max_image_pixels", "declared_size",
           "decode_image", "png_overrun", "video_fps", "DEFAULT_MAX_IMAGE_PIXELS"]

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm"}
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000  # 100 MP: a 10000x10000 photo; decodes to 300 MB of BGR
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"}


class ImageError(EdgerunError, ValueError):
    """An image or video file that cannot be decoded."""


@dataclass
class Frame:
    source: str
    index: int  # frame number within a video, 0 for images
    image: np.ndarray | None
    error: str | None = None


def max_image_pixels() -> int:
    """The pixel limit ``read_image`` enforces: ``$EDGERUN_MAX_IMAGE_PIXELS`` if set, else 100 MP."""
    env = os.environ.get("EDGERUN_MAX_IMAGE_PIXELS")
    if not env:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        n = int(env)
    except ValueError:
        n = 0
    if n <= 0:
        raise EdgerunValueError(f"EDGERUN_MAX_IMAGE_PIXELS: expected a positive integer, got {env!r}")
    return n


def read_image(path: str, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file to BGR uint8 (H, W, 3). Raises ``ImageError`` naming the file.

    Files whose header declares more than ``max_pixels`` (default ``max_image_pixels()``) are
    refused before decoding (decompression bombs); PNG, JPEG, BMP, WebP and GIF headers are read.
    """
    return decode_image(_read_bytes(path), path, max_pixels=max_pixels)


def decode_image(data: np.ndarray | bytes, name: str, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode encoded image bytes (uint8 array, ``bytes``, ``memoryview``) to BGR uint8 with
    ``read_image``'s checks (empty data, pixel limit before decoding, PNG overruns); raises
    ``ImageError`` starting with ``name`` (and OpenCV's reason when OpenCV refused the data)."""
    import cv2

    data = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) \
        else np.asarray(data, np.uint8).reshape(-1)
    if data.size == 0:
        raise ImageError(f"{name}: file is empty")
    limit = max_image_pixels() if max_pixels is None else int(max_pixels)
    size = declared_size(data)
    if size is not None and size[0] * size[1] > limit:
        w, h = size
        raise ImageError(f"{name}: image declares {w}x{h} = {w * h / 1e6:.1f} MP, over the limit of "
                         f"{limit / 1e6:g} MP (a decompression bomb?); raise it with "
                         "EDGERUN_MAX_IMAGE_PIXELS or read_image(..., max_pixels=...)")
    overrun = png_overrun(data)
    if overrun:
        raise ImageError(f"{name}: corrupt PNG: {overrun}")
    try:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # e.g. a corrupt header over OpenCV's own size limits
        reason = re.sub(r"^OpenCV\([^)]*\) \S+: error: ", "", str(exc).strip().splitlines()[-1])
        raise ImageError(f"{name}: not a decodable image ({data.size} bytes; OpenCV: {reason})") from None
    if img is None:
        raise ImageError(f"{name}: not a decodable image ({data.size} bytes)")
    return img


def _read_bytes(path: str) -> np.ndarray:
    """The file's bytes; refuses non-regular files (a FIFO or /dev/zero named x.jpg never ends)."""
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
        data = np.fromfile(path, dtype=np.uint8) if regular else None  # non-ASCII paths work
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: cannot read file ({exc})") from None
    if data is None:
        raise ImageError(f"{path}: not a regular file")
    if data.size == 0:
        raise ImageError(f"{path}: file is empty")
    return data


def declared_size(data: np.ndarray | bytes) -> tuple[int, int] | None:
    """(width, height) a PNG/JPEG/BMP/WebP/GIF header declares, without decoding; None if unknown."""
    mv = memoryview(np.ascontiguousarray(data).reshape(-1) if isinstance(data, np.ndarray) else data)
    b = bytes(mv[:64])
    if b.startswith(b"\x89PNG\r\n\x1a\n") and b[12:16] == b"IHDR" and len(b) >= 24:
        return int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")
    if b[:6] in (b"GIF87a", b"GIF89a") and len(b) >= 10:
        return int.from_bytes(b[6:8], "little"), int.from_bytes(b[8:10], "little")
    if b.startswith(b"BM") and len(b) >= 26:
        if int.from_bytes(b[14:18], "little") == 12:  # BITMAPCOREHEADER: 16-bit sizes
            return int.from_bytes(b[18:20], "little"), int.from_bytes(b[20:22], "little")
        w, h = (int.from_bytes(b[o:o + 4], "little", signed=True) for o in (18, 22))
        return abs(w), abs(h)  # negative height: top-down rows
    if b.startswith(b"RIFF") and b[8:12] == b"WEBP":
        return _webp_size(b)
    if b.startswith(b"\xff\xd8"):
        return _jpeg_size(mv)  # segments may run far into the file: walk it without copying
    return None


def _webp_size(b: bytes) -> tuple[int, int] | None:
    chunk = b[12:16]
    if chunk == b"VP8X" and len(b) >= 30:
        return 1 + int.from_bytes(b[24:27], "little"), 1 + int.from_bytes(b[27:30], "little")
    if chunk == b"VP8 " and len(b) >= 30 and b[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(b[26:28], "little") & 0x3FFF, int.from_bytes(b[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and len(b) >= 25 and b[20] == 0x2F:
        bits = int.from_bytes(b[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    return None


def png_overrun(data: np.ndarray) -> str | None:
    """A PNG chunk whose declared length runs past the end of the file (OpenCV would allocate that
    length up front: a 12 KB file can cost 1.4 GB), described; None when every chunk fits."""
    if bytes(data[:8]) != b"\x89PNG\r\n\x1a\n":
        return None
    pos, size = 8, int(data.size)
    while pos + 8 <= size:
        length = int.from_bytes(bytes(data[pos:pos + 4]), "big")
        kind = bytes(data[pos + 4:pos + 8])
        if pos + 12 + length > size:
            return (f"chunk {kind.decode('latin-1')!r} at byte {pos} declares {length} bytes, past the end "
                    f"of the file ({size} bytes)")
        if kind == b"IEND":
            return None
        pos += 12 + length
    return None


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(b: memoryview) -> tuple[int, int] | None:
    """Walk the JPEG marker segments up to the first SOFn (frame header) or SOS."""
    i = 2
    while i + 4 <= len(b):
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        if marker in _SOF and i + 9 <= len(b):
            return int.from_bytes(b[i + 7:i + 9], "big"), int.from_bytes(b[i + 5:i + 7], "big")
        if marker == 0xDA:
            return None
        i += 2 + int.from_bytes(b[i + 2:i + 4], "big")
    return None


def expand_source(source: str) -> list[str]:
    """A file, a directory (its images and videos, sorted) or a glob -> list of files."""
    if os.path.isdir(source):
        files = [os.path.join(source, f) for f in sorted(os.listdir(source))]
        return [f for f in files if os.path.splitext(f)[1].lower() in IMAGE_EXTS | VIDEO_EXTS]
    if any(c in source for c in "*?["):
        return sorted(glob.glob(source, recursive=True))
    if not os.path.exists(source):
        raise ImageError(f"source not found: {source}")
    return [source]


def is_video(path: str) -> bool:
    """True for a video file name (by extension, ``VIDEO_EXTS``)."""
    return os.path.splitext(path)[1].lower() in VIDEO_EXTS


def iter_frames(source: str, *, max_pixels: int | None = None) -> Iterator[Frame]:
    """Every frame of every file in ``source``; bad files yield a Frame with ``error``.
    ``max_pixels``: see ``read_image``."""
    files = expand_source(source)
    if not files:
        raise ImageError(f"no images or videos found in {source}")
    for path in files:
        yield from file_frames(path, max_pixels=max_pixels)


def file_frames(path: str, *, max_pixels: int | None = None) -> Iterator[Frame]:
    """One image file -> one Frame; one video -> every frame in order; a file that cannot be
    read -> one Frame with ``error``."""
    if is_video(path):
        yield from video_frames(path)
        return
    try:
        yield Frame(path, 0, read_image(path, max_pixels=max_pixels))
    except ImageError as exc:
        yield Frame(path, 0, None, str(exc))


def video_frames(path: str) -> Iterator[Frame]:
    """Every frame of a video file, in order; one Frame with ``error`` if it has none."""
    try:
        reader = VideoReader(path)
    except ImageError as exc:
        yield Frame(path, 0, None, str(exc))
        return
    with reader:
        i = 0
        while (img := reader.read()) is not None:
            yield Frame(path, i, img)
            i += 1
    if i == 0:
        yield Frame(path, 0, None, f"{path}: video has no decodable frames")


class VideoReader:
    """A video file opened with OpenCV: ``read()`` -> the next BGR frame, or None at the end.
    Raises ``ImageError`` naming the file when it cannot be opened."""

    def __init__(self, path: str):
        import cv2

        if not os.path.isfile(path):  # OpenCV would try it as an image sequence or a URL
            why = "not a regular file" if os.path.exists(path) else "no such file"
            raise ImageError(f"{path}: cannot open video ({why})")
        self.path = path
        self._cap = cv2.VideoCapture(path)
        if not self._cap.isOpened():
            self._cap.release()
            raise ImageError(f"{path}: cannot open video")

    def read(self) -> np.ndarray | None:
        ok, img = self._cap.read()
        return img if ok else None

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def video_fps(path: str) -> float:
    """The frame rate a video file declares (25 when it declares none)."""
    import cv2

    cap = cv2.VideoCapture(path)
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    cap.release()
    return fps if fps and fps > 0 else 25.0
