"""Reading images and videos for the CLI: files, directories, globs and video files.

Every frame comes out as a ``Frame``; a file that cannot be read comes out as a ``Frame`` with
``error`` set, so one bad file never stops a run.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from edgerun.kernels.errors import EdgerunError

__all__ = ["Frame", "ImageError", "read_image", "iter_frames", "IMAGE_EXTS", "VIDEO_EXTS"]

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"}


class ImageError(EdgerunError, ValueError):
    """An image or video file that cannot be decoded."""


@dataclass
class Frame:
    source: str
    index: int  # frame number within a video, 0 for images
    image: np.ndarray | None
    error: str | None = None


def read_image(path: str) -> np.ndarray:
    """Decode an image file to BGR uint8 (H, W, 3). Raises ``ImageError`` naming the file."""
    import cv2

    try:
        data = np.fromfile(path, dtype=np.uint8)  # works with non-ASCII paths, unlike cv2.imread
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: cannot read file ({exc})") from None
    if data.size == 0:
        raise ImageError(f"{path}: file is empty")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f"{path}: not a decodable image ({data.size} bytes)")
    return img


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


def iter_frames(source: str) -> Iterator[Frame]:
    """Every frame of every file in ``source``; bad files yield a Frame with ``error``."""
    files = expand_source(source)
    if not files:
        raise ImageError(f"no images or videos found in {source}")
    for path in files:
        if os.path.splitext(path)[1].lower() in VIDEO_EXTS:
            yield from _video_frames(path)
            continue
        try:
            yield Frame(path, 0, read_image(path))
        except ImageError as exc:
            yield Frame(path, 0, None, str(exc))


def _video_frames(path: str) -> Iterator[Frame]:
    import cv2

    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            yield Frame(path, 0, None, f"{path}: cannot open video")
            return
        i = 0
        while True:
            ok, img = cap.read()
            if not ok:
                break
            yield Frame(path, i, img)
            i += 1
        if i == 0:
            yield Frame(path, 0, None, f"{path}: video has no decodable frames")
    finally:
        cap.release()


def video_fps(path: str) -> float:
    import cv2

    cap = cv2.VideoCapture(path)
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    cap.release()
    return fps if fps and fps > 0 else 25.0
