"""Draw labelled boxes on a BGR uint8 image in place (OpenCV primitives, deterministic colour per class)."""
from __future__ import annotations

import colorsys
from typing import Mapping, Sequence

import numpy as np

from . import checks
from .errors import EdgerunValueError

__all__ = ["draw_boxes", "draw_obb", "class_color"]

_GOLDEN = 0.6180339887498949


def class_color(class_id: int) -> tuple[int, int, int]:
    """A fixed BGR colour for a class: hues spaced by the golden ratio, so neighbours differ."""
    r, g, b = colorsys.hsv_to_rgb((int(class_id) * _GOLDEN) % 1.0, 0.8, 0.95)
    return int(round(b * 255)), int(round(g * 255)), int(round(r * 255))


def _label(class_id: int, confidence, names) -> str:
    if names is None:
        text = str(class_id)
    elif isinstance(names, Mapping):
        text = str(names.get(class_id, class_id))
    else:
        text = str(names[class_id]) if 0 <= class_id < len(names) else str(class_id)
    return text if confidence is None else f"{text} {float(confidence):.2f}"


def _text_color(bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    luma = 0.114 * bgr[0] + 0.587 * bgr[1] + 0.299 * bgr[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def _draw_one(image: np.ndarray, box, text: str, color, thickness: int) -> None:
    import cv2  # lazy: importing edgerun.kernels stays cheap

    h, w = image.shape[:2]
    x1, x2 = (min(max(int(round(float(v))), 0), w - 1) for v in (box[0], box[2]))  # clip: edges and
    y1, y2 = (min(max(int(round(float(v))), 0), h - 1) for v in (box[1], box[3]))  # label stay visible
    cv2.rectangle(image, (x1, y1), (x2, y2), color, thickness)  # LINE_8: edges are exactly `color`
    scale = max(0.4, thickness / 3)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, thickness // 2))
    top = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else y1  # inside the box when no room above
    cv2.rectangle(image, (x1, top), (x1 + tw + 2, top + th + base + 2), color, -1)
    cv2.putText(image, text, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, _text_color(color),
                max(1, thickness // 2), cv2.LINE_AA)


def _check_image(image) -> np.ndarray:
    image = checks.array("image", image, np.uint8, 3)
    if image.shape[2] != 3:
        raise EdgerunValueError(f"image: expected shape (H, W, 3) BGR, got {image.shape}")
    if not image.flags.writeable or image.strides[1:] != (3, 1):
        raise EdgerunValueError("image: must be writable with contiguous pixels (strides (*, 3, 1)) to be "
                                "drawn on in place; pass np.ascontiguousarray(image) and use the result")
    return image


def _check_labels(class_id, confidence, thickness, n: int, what: str):
    class_id = checks.array("class_id", class_id, (np.int32, np.int64), 1)
    if class_id.shape[0] != n:
        raise EdgerunValueError(f"class_id: expected shape ({n},) to match {what}, got {class_id.shape}")
    if confidence is not None:
        confidence = checks.array("confidence", confidence, (np.float32, np.float64), 1)
        if confidence.shape[0] != n:
            raise EdgerunValueError(f"confidence: expected shape ({n},) to match {what}, got {confidence.shape}")
    thickness = checks.positive_int("thickness", thickness)
    if thickness > 32767:  # OpenCV's limit: beyond it cv2 raises its own error
        raise EdgerunValueError(f"thickness: expected at most 32767, got {thickness}")
    return class_id, confidence, thickness


def draw_boxes(image: np.ndarray, xyxy: np.ndarray, class_id: np.ndarray, confidence: np.ndarray | None = None,
               names: Sequence[str] | Mapping[int, str] | None = None, *, thickness: int = 2) -> np.ndarray:
    """Draw each box with its class label (and confidence) on ``image`` (H, W, 3) BGR uint8, in place.

    Boxes are clipped to the image; boxes with non-finite coordinates are skipped. Returns ``image``.
    """
    image = _check_image(image)
    xyxy = checks.array("xyxy", xyxy, (np.float32, np.float64), 2)
    n = xyxy.shape[0]
    if xyxy.shape[1] != 4:
        raise EdgerunValueError(f"xyxy: expected shape (N, 4), got {xyxy.shape}")
    class_id, confidence, thickness = _check_labels(class_id, confidence, thickness, n, "xyxy")
    finite = np.isfinite(xyxy).all(axis=1)
    for i in np.flatnonzero(finite):
        c = int(class_id[i])
        text = _label(c, None if confidence is None else confidence[i], names)
        _draw_one(image, xyxy[i], text, class_color(c), thickness)
    return image


def draw_obb(image: np.ndarray, corners: np.ndarray, class_id: np.ndarray, confidence: np.ndarray | None = None,
             names: Sequence[str] | Mapping[int, str] | None = None, *, thickness: int = 2,
             labels: bool = True) -> np.ndarray:
    """Draw each rotated box (N, 4, 2) ``corners`` as a closed polygon outline in its class colour, in place.

    Corners are rounded to the nearest pixel (``cv2.polylines``, LINE_8, so edges are exactly the class
    colour; OpenCV clips to the image). With ``labels`` the class label (and confidence) sits at the box's
    topmost corner. Boxes with a non-finite corner are skipped. Returns ``image``.
    """
    import cv2  # lazy: importing edgerun.kernels stays cheap

    image = _check_image(image)
    corners = checks.array("corners", corners, (np.float32, np.float64), 3)
    n = corners.shape[0]
    if corners.shape[1:] != (4, 2):
        raise EdgerunValueError(f"corners: expected shape (N, 4, 2), got {corners.shape}")
    class_id, confidence, thickness = _check_labels(class_id, confidence, thickness, n, "corners")
    lim = float(2 ** 24)  # keeps int32 conversion safe; OpenCV clips the rest
    finite = np.isfinite(corners).all(axis=(1, 2))
    h, w = image.shape[:2]
    for i in np.flatnonzero(finite):
        c = int(class_id[i])
        color = class_color(c)
        pts = np.rint(np.clip(corners[i], -lim, lim)).astype(np.int32)
        cv2.polylines(image, [pts.reshape(-1, 1, 2)], True, color, thickness, cv2.LINE_8)
        if labels:
            text = _label(c, None if confidence is None else confidence[i], names)
            top = pts[int(np.argmin(pts[:, 1]))]
            x, y = min(max(int(top[0]), 0), w - 1), min(max(int(top[1]), 0), h - 1)
            scale = max(0.4, thickness / 3)
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, thickness // 2))
            y0 = y - th - base - 2 if y - th - base - 2 >= 0 else y
            cv2.rectangle(image, (x, y0), (x + tw + 2, y0 + th + base + 2), color, -1)
            cv2.putText(image, text, (x + 1, y0 + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, _text_color(color),
                        max(1, thickness // 2), cv2.LINE_AA)
    return image
