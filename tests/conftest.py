"""Shared fixtures: the real models and photos in ../shared (skipped with a reason when absent)."""
from __future__ import annotations

import pytest
from helpers import ROOT, shared_dir  # noqa: F401 - ROOT re-exported for tests

SHARED = shared_dir()
MODELS = SHARED / "models"
IMAGES = SHARED / "images"
VIDEO = SHARED / "video" / "vtest.avi"
REFS = SHARED / "refs"

SHARED_REASON = (f"real models/photos not found at {SHARED} (a fresh clone without ../shared); "
                 "set EDGERUN_SHARED to run these tests")


def shared_file(*parts: str) -> Path:
    """Path to a file under ../shared, skipping the test with a clear reason if it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is absent: {SHARED_REASON}")
    return p


@pytest.fixture(scope="session")
def yolo() -> str:
    """../shared's yolov8n 640 fp32 ONNX (the export tests' source model)."""
    return str(shared_file("models", "yolov8n_640_fp32dq.onnx"))


@pytest.fixture(scope="session")
def photos() -> str:
    """../shared's photo folder."""
    return str(shared_file("images"))


@pytest.fixture(scope="session")
def bus_bgr():
    import cv2
    return cv2.imread(str(shared_file("images", "bus.jpg")))


@pytest.fixture(scope="session")
def zidane_bgr():
    import cv2
    return cv2.imread(str(shared_file("images", "zidane.jpg")))


@pytest.fixture(scope="session")
def ultra_zoo(tmp_path_factory):
    """The export lane's model zoo (tests/export/ultra_zoo.py: Ultralytics yamls, seeded, exported) over
    one folder per session (``$EDGERUN_ZOO_DIR`` keeps it between runs while developing). Skips
    without the ultralytics extra."""
    import os
    import sys

    pytest.importorskip("ultralytics", reason="needs the ultralytics extra (CI's export lane: "
                        "pip install torch==2.14.1 torchvision==0.29.1, then ultralytics==8.4.190)")
    sys.path.insert(0, str(ROOT / "tests" / "export"))
    from ultra_zoo import Zoo

    zoo = Zoo(os.environ.get("EDGERUN_ZOO_DIR") or tmp_path_factory.mktemp("ultra_zoo"))
    yield zoo
    if zoo.timings:
        print(f"\nultra_zoo: built {len(zoo.timings)} files in {sum(zoo.timings.values()):.1f} s")


# Property tests are derandomized: CI runs the same examples every time (seeded randomness only).
from hypothesis import settings as _hyp_settings  # noqa: E402

_hyp_settings.register_profile("edgerun", derandomize=True, deadline=None)
_hyp_settings.load_profile("edgerun")
