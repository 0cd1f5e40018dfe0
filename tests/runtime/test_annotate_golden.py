"""Golden-image test of annotation: the bundled demo detector on a fixed generated scene, drawn with
``tasks.annotate``, compared with tests/data/golden_demo_annotated.png (made by this code and
inspected by eye: boxes on the shapes, class labels with scores).

Tolerance: anti-aliased label text and JPEG-free PNG pixels may shift slightly between OpenCV
builds, so at most 0.5% of pixel values may differ by more than 48 levels and the mean absolute
difference must stay under 1.5 levels. A missing, moved or recoloured box breaks both bounds.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from edgerun.runtime.demo import make_scene
from edgerun.runtime.tasks.detector import Detector
from edgerun.runtime.cli.predict import DEMO_MODEL
from edgerun.runtime.tasks.dispatch import annotate

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden_demo_annotated.png"


def _render() -> np.ndarray:
    img = make_scene(11, size=(240, 320))[0]
    det = Detector.from_path(DEMO_MODEL)
    return annotate(img.copy(), det.detect(img), det.spec.names)


def test_annotation_matches_the_golden_image():
    out = _render()
    if os.environ.get("EDGERUN_UPDATE_GOLDEN"):
        cv2.imwrite(str(GOLDEN), out)
    gold = cv2.imread(str(GOLDEN))
    assert gold is not None and gold.shape == out.shape
    diff = np.abs(out.astype(np.int16) - gold.astype(np.int16))
    assert diff.mean() < 1.5, diff.mean()
    assert (diff > 48).mean() < 0.005, (diff > 48).mean()
    assert not np.array_equal(out, make_scene(11, size=(240, 320))[0])  # something was drawn
