"""Synthetic shape scenes for the bundled demo detector (numpy + OpenCV only, no downloads).

A scene is a cluttered background (gradient, texture, soft blobs, lines, noise) with a few filled
shapes of the classes in ``CLASS_NAMES``, each with a random colour, size, position and rotation.
Everything is drawn from one seeded ``numpy.random.Generator``, so a seed always gives the same
scene. ``edgerun predict`` with no source runs the demo model on ``sample_scene_path()``.
"""
from __future__ import annotations

import os
import tempfile

import cv2
import numpy as np

__all__ = ["CLASS_NAMES", "make_scene", "sample_scene_path", "write_sample_video"]

CLASS_NAMES = ("circle", "square", "triangle", "star")
SCENE_VERSION = 2  # bump when the generator's output changes (renames the cached sample scene)
SAMPLE_SEED = 2024
SAMPLE_SIZE = (480, 640)
_SHIFT = 4  # fixed-point bits for sub-pixel polygon vertices in cv2.fillPoly
_MIN_CONTRAST = 90.0  # L2 distance (BGR) between a shape's colour and the background under it


def make_scene(seed: int, size: tuple[int, int] = (480, 640), max_objects: int = 6
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A deterministic scene: (BGR uint8 (h, w, 3), boxes xyxy float32 (N, 4), class ids int64 (N,))."""
    h, w = int(size[0]), int(size[1])
    if h < 32 or w < 32:
        raise ValueError(f"size: expected (height, width) of at least (32, 32), got {size}")
    rng = np.random.default_rng(seed)
    image = _background(rng, h, w)
    shapes = _place_shapes(rng, h, w, int(rng.integers(1, max_objects + 1)))
    for cls, centre, radius, angle in shapes:
        _draw_shape(image, rng, cls, centre, radius, angle)
    image = _add_noise(image, rng, sigma=float(rng.uniform(0.0, 8.0)))
    return image, _boxes(shapes, h, w), np.array([s[0] for s in shapes], np.int64)


# -- shapes ---------------------------------------------------------------------------------------
def shape_vertices(cls: int, centre: tuple[float, float], radius: float, angle: float) -> np.ndarray:
    """Polygon (K, 2) float64 of a shape of class ``cls`` with circumradius ``radius``."""
    name = CLASS_NAMES[cls]
    if name == "circle":
        t = np.linspace(0.0, 2 * np.pi, 72, endpoint=False)
        r = np.full_like(t, radius)
    elif name == "star":
        t = angle + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, radius, 0.45 * radius)
    else:
        k = 4 if name == "square" else 3
        t = angle + np.arange(k) * 2 * np.pi / k
        r = np.full_like(t, radius)
    return np.stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t)], axis=1)


def _boxes(shapes: list, h: int, w: int) -> np.ndarray:
    out = np.zeros((len(shapes), 4), np.float32)
    for i, (cls, centre, radius, angle) in enumerate(shapes):
        v = shape_vertices(cls, centre, radius, angle)
        if CLASS_NAMES[cls] == "circle":
            v = np.array([[centre[0] - radius, centre[1] - radius], [centre[0] + radius, centre[1] + radius]])
        out[i] = [v[:, 0].min(), v[:, 1].min(), v[:, 0].max(), v[:, 1].max()]
    np.clip(out, 0, [w, h, w, h], out=out)
    return out


def _place_shapes(rng: np.random.Generator, h: int, w: int, n: int) -> list:
    """Up to ``n`` (class, centre, radius, angle) with little overlap, fully inside the image."""
    shapes: list = []
    boxes: list[np.ndarray] = []
    short = min(h, w)
    for _ in range(n * 20):
        if len(shapes) == n:
            break
        radius = float(rng.uniform(max(0.04 * short, 9.0), 0.17 * short))
        cx = float(rng.uniform(radius + 1, w - radius - 1))
        cy = float(rng.uniform(radius + 1, h - radius - 1))
        box = np.array([cx - radius, cy - radius, cx + radius, cy + radius])
        if any(_iou(box, b) > 0.05 for b in boxes):
            continue
        shapes.append((int(rng.integers(len(CLASS_NAMES))), (cx, cy), radius, float(rng.uniform(0, 2 * np.pi))))
        boxes.append(box)
    return shapes


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _draw_shape(image: np.ndarray, rng: np.random.Generator, cls: int, centre: tuple[float, float],
                radius: float, angle: float) -> None:
    v = shape_vertices(cls, centre, radius, angle)
    pts = np.round(v * (1 << _SHIFT)).astype(np.int32)[None]
    x, y, r = int(centre[0]), int(centre[1]), max(1, int(radius * 0.5))
    under = image[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1].reshape(-1, 3).mean(0)
    colour = _contrasting_colour(rng, under)
    cv2.fillPoly(image, pts, colour, cv2.LINE_AA, _SHIFT)
    if rng.random() < 0.3:  # an outline in another colour, sometimes
        edge = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.polylines(image, pts, True, edge, int(rng.integers(1, 3)), cv2.LINE_AA, _SHIFT)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> tuple[int, int, int]:
    for _ in range(50):
        c = rng.integers(0, 256, 3)
        if np.linalg.norm(c - background) >= _MIN_CONTRAST:
            break
    return tuple(int(v) for v in c)


# -- background -----------------------------------------------------------------------------------
def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Gradient + texture + soft blobs + lines: clutter that is not one of the shape classes."""
    image = _gradient(rng, h, w)
    if rng.random() < 0.5:
        image += _stripes(rng, h, w)
    _blobs(image, rng, int(rng.integers(0, 6)))
    out = np.clip(image, 0, 255).astype(np.uint8)
    _lines(out, rng, int(rng.integers(0, 12)))
    return out


def _gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A linear two-colour gradient (computed on a coarse grid; linear resize keeps it exact)."""
    c0, c1 = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    gh, gw = max(2, h // 8), max(2, w // 8)
    yy, xx = np.ogrid[0:gh, 0:gw]
    t = (xx * (np.cos(theta) / gw) + yy * (np.sin(theta) / gh)).astype(np.float32)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    small = c0 + t[..., None] * (c1 - c0)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _stripes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    period = rng.uniform(6, 40)
    theta = rng.uniform(0, np.pi)
    yy, xx = np.ogrid[0:h, 0:w]
    wave = np.sin(((xx * np.cos(theta) + yy * np.sin(theta)) * (2 * np.pi / period)).astype(np.float32))
    return (wave[..., None] * rng.uniform(5, 25, 3)).astype(np.float32)


def _blobs(image: np.ndarray, rng: np.random.Generator, n: int) -> None:
    """Blurred ellipses: soft-edged, unlike the crisp shapes (drawn in a local window)."""
    h, w = image.shape[:2]
    for _ in range(n):
        axes = (int(rng.integers(8, max(9, w // 4))), int(rng.integers(8, max(9, h // 4))))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        angle, sigma = float(rng.uniform(0, 180)), float(rng.uniform(6, 20))
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        strength = float(rng.uniform(0.3, 0.8))
        m = max(axes) + int(3 * sigma) + 1
        x0, y0, x1, y1 = max(0, cx - m), max(0, cy - m), min(w, cx + m), min(h, cy + m)
        layer = np.zeros((y1 - y0, x1 - x0), np.float32)
        cv2.ellipse(layer, (cx - x0, cy - y0), axes, angle, 0, 360, 1.0, -1)
        alpha = cv2.GaussianBlur(layer, (0, 0), sigma)[..., None] * strength
        roi = image[y0:y1, x0:x1]
        roi *= 1 - alpha
        roi += alpha * colour


def _lines(image: np.ndarray, rng: np.random.Generator, n: int) -> None:
    h, w = image.shape[:2]
    for _ in range(n):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.line(image, p0, p1, colour, int(rng.integers(1, 4)), cv2.LINE_AA)


def _add_noise(image: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Zero-mean uniform pixel noise with standard deviation ``sigma`` (saturating)."""
    if sigma <= 0.5:
        return image
    u = np.frombuffer(rng.bytes(image.size), np.uint8).reshape(image.shape)
    k = sigma / 73.9  # std of uniform 0..255
    return cv2.addWeighted(image, 1.0, u, k, -127.5 * k)


# -- files ----------------------------------------------------------------------------------------
def _cache_root() -> str | None:
    """edgerun's writable cache directory (``$EDGERUN_CACHE_DIR``, ``~/.cache/edgerun``, tmp), or None.

    The probe order and the environment variable live in ``kernels/_jit.py``; this reuses them.
    """
    from edgerun.kernels import cache_dir

    kernels_dir = cache_dir()
    return os.path.dirname(kernels_dir) if kernels_dir else None


def sample_scene_path(directory: str | None = None) -> str:
    """Path of the demo's sample scene JPEG, written once into edgerun's cache directory.

    ``directory`` overrides the cache directory. Raises ``OSError`` naming the directories tried
    when none is writable.
    """
    root = directory or _cache_root()
    if root is None:
        raise OSError("edgerun: no writable cache directory for the demo scene (tried $EDGERUN_CACHE_DIR, "
                      "~/.cache/edgerun and the temp dir); set EDGERUN_CACHE_DIR or pass a SOURCE")
    name = f"scene-v{SCENE_VERSION}-{SAMPLE_SEED}-{SAMPLE_SIZE[0]}x{SAMPLE_SIZE[1]}.jpg"
    path = os.path.join(root, "demo", name)
    if os.path.isfile(path) and os.path.getsize(path) > 0:
        return path
    image, _, _ = make_scene(SAMPLE_SEED, SAMPLE_SIZE)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise OSError("edgerun: OpenCV could not encode the demo scene as JPEG")
    _write_atomic(path, data.tobytes())
    return path


def _write_atomic(path: str, data: bytes) -> None:
    """Write via a temp file + rename, so concurrent processes never see a half-written file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_sample_video(path: str, frames: int = 48, seed: int = 0, size: tuple[int, int] = (360, 640),
                       fps: float = 15.0, max_objects: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    """Write a video of shapes moving (and bouncing) over a static cluttered background.

    Codec from the extension: ``.avi`` -> MJPG, anything else -> mp4v. Returns the ground truth per
    frame: ``[(boxes xyxy float32 (N, 4), class ids int64 (N,)), ...]``.
    """
    h, w = int(size[0]), int(size[1])
    rng = np.random.default_rng(seed)
    background = _background(rng, h, w)
    shapes = _place_shapes(rng, h, w, int(rng.integers(1, max_objects + 1)))
    colours = [_contrasting_colour(rng, background[int(c[1]), int(c[0])].astype(np.float64))
               for _, c, _, _ in shapes]
    motion = [(rng.uniform(-6, 6, 2), float(rng.uniform(-0.1, 0.1))) for _ in shapes]
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.lower().endswith(".avi") else "mp4v"))
    writer = cv2.VideoWriter(path, fourcc, fps, (w, h))
    if not writer.isOpened():
        raise OSError(f"path: OpenCV could not open a video writer for {path!r}")
    truth = []
    try:
        for _ in range(frames):
            frame = background.copy()
            for (cls, centre, radius, angle), colour in zip(shapes, colours):
                pts = np.round(shape_vertices(cls, centre, radius, angle) * (1 << _SHIFT)).astype(np.int32)
                cv2.fillPoly(frame, pts[None], colour, cv2.LINE_AA, _SHIFT)
            writer.write(frame)
            truth.append((_boxes(shapes, h, w), np.array([s[0] for s in shapes], np.int64)))
            shapes = [_step(s, m, h, w) for s, m in zip(shapes, motion)]
    finally:
        writer.release()
    return truth


def _step(shape: tuple, motion: tuple, h: int, w: int) -> tuple:
    """Move a shape one frame, reflecting its velocity (in place) at the image borders."""
    cls, (cx, cy), radius, angle = shape
    velocity, spin = motion
    cx, cy = cx + velocity[0], cy + velocity[1]
    if not radius + 1 <= cx <= w - radius - 1:
        velocity[0] = -velocity[0]
        cx = float(np.clip(cx, radius + 1, w - radius - 1))
    if not radius + 1 <= cy <= h - radius - 1:
        velocity[1] = -velocity[1]
        cy = float(np.clip(cy, radius + 1, h - radius - 1))
    return cls, (cx, cy), radius, angle + spin
