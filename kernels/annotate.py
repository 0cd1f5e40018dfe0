"""Task annotations on a BGR uint8 image, in place: translucent masks, keypoint skeletons, landmarks,
label maps and top-k text (OpenCV primitives; colours from ``draw.class_color``)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from . import checks
from .draw import class_color
from .errors import EdgerunValueError

__all__ = ["draw_masks", "draw_keypoints", "draw_landmarks", "draw_label_map", "draw_depth", "draw_text_lines"]


def _image(image) -> np.ndarray:
    img = checks.array("image", image, np.uint8, 3)
    if img.shape[2] != 3 or not img.flags.writeable:
        raise EdgerunValueError(f"image: expected a writable (H, W, 3) BGR uint8 image, got shape {img.shape}")
    return img


def draw_masks(image: np.ndarray, masks: np.ndarray, class_id: np.ndarray, *, alpha: float = 0.45
               ) -> np.ndarray:
    """Blend each (H, W) bool mask of ``masks`` (N, H, W) over ``image`` in its class colour."""
    img = _image(image)
    m = checks.array("masks", masks, np.bool_, 3)
    if m.shape[1:] != img.shape[:2] or len(class_id) != m.shape[0]:
        raise EdgerunValueError(f"masks: expected (N, {img.shape[0]}, {img.shape[1]}) with N = "
                                f"len(class_id) = {len(class_id)}, got {m.shape}")
    a = checks.finite_float("alpha", alpha, 0.0, 1.0)
    for mask, c in zip(m, class_id):
        ys, xs = np.nonzero(mask)
        if ys.size:
            px = img[ys, xs].astype(np.float32)
            img[ys, xs] = (px * (1 - a) + np.float32(class_color(int(c))) * a).astype(np.uint8)
    return img


def draw_keypoints(image: np.ndarray, keypoints: np.ndarray, confidence: np.ndarray | None = None,
                   skeleton: Sequence[tuple[int, int]] = (), *, min_confidence: float = 0.5,
                   radius: int = 4) -> np.ndarray:
    """Draw (N, K, 2) keypoints (and limbs between pairs in ``skeleton``) whose confidence >= min."""
    import cv2

    img = _image(image)
    kp = checks.array("keypoints", keypoints, np.float32, 3)
    conf = np.ones(kp.shape[:2], np.float32) if confidence is None else np.asarray(confidence)
    if conf.shape != kp.shape[:2]:
        raise EdgerunValueError(f"confidence: expected shape {kp.shape[:2]}, got {conf.shape}")
    for pts, ok in zip(kp, conf >= min_confidence):
        for a, b in skeleton:
            if ok[a] and ok[b]:
                cv2.line(img, _pt(pts[a]), _pt(pts[b]), class_color(a + 3), 2, cv2.LINE_AA)
        for k in np.nonzero(ok)[0]:
            cv2.circle(img, _pt(pts[k]), radius, class_color(int(k)), -1, cv2.LINE_AA)
    return img


def draw_landmarks(image: np.ndarray, landmarks: np.ndarray, *, radius: int = 3) -> np.ndarray:
    """Draw (N, L, 2) landmarks (e.g. 5 face points), one colour per landmark index."""
    return draw_keypoints(image, landmarks, None, (), min_confidence=0.0, radius=radius)


def draw_label_map(image: np.ndarray, label_map: np.ndarray, *, alpha: float = 0.5,
                   background: int | None = 0) -> np.ndarray:
    """Blend a (H, W) uint8 class map over ``image``; pixels of class ``background`` are left as is."""
    img = _image(image)
    lm = checks.array("label_map", label_map, np.uint8, 2)
    if lm.shape != img.shape[:2]:
        raise EdgerunValueError(f"label_map: expected shape {img.shape[:2]}, got {lm.shape}")
    lut = np.array([class_color(c) for c in range(256)], np.float32)
    keep = np.ones(lm.shape, bool) if background is None else lm != background
    a = checks.finite_float("alpha", alpha, 0.0, 1.0)
    img[keep] = (img[keep] * (1 - a) + lut[lm[keep]] * a).astype(np.uint8)
    return img


def draw_depth(image: np.ndarray, depth: np.ndarray, *, alpha: float = 0.6) -> np.ndarray:
    """Blend a colour-mapped (H, W) float32 depth map over ``image`` (near red, far blue: OpenCV's JET of
    the inverse depth stretched over its range; non-finite or non-positive depths count as farthest)."""
    import cv2

    img = _image(image)
    d = checks.array("depth", depth, np.float32, 2)
    if d.shape != img.shape[:2]:
        raise EdgerunValueError(f"depth: expected shape {img.shape[:2]}, got {d.shape}")
    a = checks.finite_float("alpha", alpha, 0.0, 1.0)
    ok = np.isfinite(d) & (d > 0)
    inv = np.zeros(d.shape, np.float32)
    np.divide(1.0, d, out=inv, where=ok)
    lo, hi = (float(inv[ok].min()), float(inv[ok].max())) if ok.any() else (0.0, 1.0)
    u8 = np.clip((inv - lo) * (255.0 / max(hi - lo, 1e-12)), 0, 255).astype(np.uint8)
    heat = cv2.applyColorMap(u8, cv2.COLORMAP_JET)
    img[...] = cv2.addWeighted(img, 1 - a, heat, a, 0)
    return img


def draw_text_lines(image: np.ndarray, lines: Sequence[str], *, origin: tuple[int, int] = (8, 8)
                    ) -> np.ndarray:
    """Write lines of text (e.g. top-k classes) at the top-left on a dark backing."""
    import cv2

    img = _image(image)
    x, y = origin
    for text in lines:
        (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1)
        cv2.rectangle(img, (x - 2, y - 2), (x + w + 2, y + h + base + 2), (0, 0, 0), -1)
        cv2.putText(img, text, (x, y + h), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
        y += h + base + 6
    return img


def _pt(p) -> tuple[int, int]:
    x, y = float(p[0]), float(p[1])
    return (int(round(x)), int(round(y))) if np.isfinite(x) and np.isfinite(y) else (-1, -1)
