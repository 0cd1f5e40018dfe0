"""Golden-image test of annotation: the bundled demo detector on a fixed generated scene, drawn with
``tasks.annotate``, compared with tests/data/golden_demo_annotated.png (made by this code and
inspected by eye: boxes on the shapes, class labels with scores).

What is version-robust and what is not: box outlines are drawn with ``LINE_8`` in the class colour
and are identical across OpenCV builds; the anti-aliased label text is not (OpenCV 4.14 and 5.1
render it differently). So the label bands (where the label of each detection is drawn, widened by
half the text width for fonts that grew) are masked out, and everything else - the scene and every
box outline - must match: at most 0.1% of pixel values differ at all, none by more than 48 levels.
Inside each label band the filled background must still be the class colour (a recoloured label
fails). ``test_comparison_catches_*`` prove that a moved, missing or recoloured box fails it.

The golden is written by an explicit command, never by the test:
``python tests/runtime/tasks/test_annotate_golden.py --update``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from edgerun.kernels.draw import class_color
from edgerun.runtime.demo import make_scene
from edgerun.runtime.tasks.detector import Detector
from edgerun.runtime.cli.predict import DEMO_MODEL
from edgerun.runtime.tasks.dispatch import annotate

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "golden_demo_annotated.png"


def _detect():
    img = make_scene(11, size=(240, 320))[0]
    det = Detector.from_path(DEMO_MODEL)
    return img, det.detect(img), det.spec.names


def _render() -> np.ndarray:
    img, d, names = _detect()
    return annotate(img.copy(), d, names)


def _label_bands(d, names, shape) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of each label as ``draw_boxes`` places it, widened for other fonts."""
    h, w = shape[:2]
    bands = []
    for (x1, y1, _, _), c, p in zip(d.xyxy.tolist(), d.class_id.tolist(), d.confidence.tolist()):
        x1, y1 = min(max(round(x1), 0), w - 1), min(max(round(y1), 0), h - 1)
        (tw, th), base = cv2.getTextSize(f"{names[c]} {p:.2f}", cv2.FONT_HERSHEY_SIMPLEX, 0.667, 1)
        top = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else y1
        bands.append((max(top - 3, 0), min(top + th + base + 6, h), max(x1 - 2, 0),
                      min(x1 + tw + tw // 2 + 6, w)))
    return bands


def _mismatch(out: np.ndarray, gold: np.ndarray, d, names) -> str | None:
    """Why ``out`` differs from ``gold`` outside the label text, or None when it matches."""
    if gold.shape != out.shape:
        return f"shape {out.shape} != golden {gold.shape}"
    keep = np.ones(out.shape[:2], bool)
    for y0, y1, x0, x1 in _label_bands(d, names, out.shape):
        keep[y0:y1, x0:x1] = False
    diff = np.abs(out.astype(np.int16) - gold.astype(np.int16))[keep]
    if (diff > 0).mean() > 0.001 or diff.max(initial=0) > 48:
        return f"{(diff > 0).mean():.4f} of pixel values differ outside labels, max {diff.max(initial=0)}"
    for (y0, y1, x0, x1), c in zip(_label_bands(d, names, out.shape), d.class_id.tolist()):
        band = out[y0:y1, x0:x1].reshape(-1, 3)
        share = (np.abs(band.astype(np.int16) - class_color(c)).max(axis=1) <= 2).mean()
        if share < 0.2:
            return f"label band at x={x0} y={y0} holds {share:.2f} of class colour {class_color(c)}"
    return None


def test_annotation_matches_the_golden_image():
    img, d, names = _detect()
    assert len(d) >= 2  # the scene has shapes the demo detector finds
    out = annotate(img.copy(), d, names)
    gold = cv2.imread(str(GOLDEN))
    assert gold is not None, f"golden image missing: {GOLDEN}"
    assert _mismatch(out, gold, d, names) is None, _mismatch(out, gold, d, names)
    assert not np.array_equal(out, img)  # something was drawn


def _redrawn(d, names, xyxy=None, class_id=None):
    from edgerun.runtime.results import Detections

    img = make_scene(11, size=(240, 320))[0]
    moved = Detections(xyxy=d.xyxy if xyxy is None else xyxy, confidence=d.confidence,
                       class_id=d.class_id if class_id is None else class_id)
    return annotate(img, moved, names)


def test_comparison_catches_a_moved_box():
    _, d, names = _detect()
    gold = cv2.imread(str(GOLDEN))
    xyxy = d.xyxy.copy()
    xyxy[0] += np.float32([0, 0, 4, 4])  # right/bottom edges 4 px off; the label stays put
    assert _mismatch(_redrawn(d, names, xyxy=xyxy), gold, d, names) is not None


def test_comparison_catches_a_missing_box():
    _, d, names = _detect()
    gold = cv2.imread(str(GOLDEN))
    keep = np.arange(1, len(d))
    from edgerun.runtime.results import Detections
    img = make_scene(11, size=(240, 320))[0]
    fewer = annotate(img, Detections(xyxy=d.xyxy[keep], confidence=d.confidence[keep],
                                     class_id=d.class_id[keep]), names)
    assert _mismatch(fewer, gold, d, names) is not None


def test_comparison_catches_a_recoloured_box():
    _, d, names = _detect()
    gold = cv2.imread(str(GOLDEN))
    cid = d.class_id.copy()
    cid[0] = (cid[0] + 1) % len(names)
    assert _mismatch(_redrawn(d, names, class_id=cid), gold, d, names) is not None


if __name__ == "__main__" and "--update" in sys.argv:
    cv2.imwrite(str(GOLDEN), _render())
    print(f"wrote {GOLDEN}")
