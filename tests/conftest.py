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
def bus_bgr():
    import cv2
    return cv2.imread(str(shared_file("images", "bus.jpg")))


@pytest.fixture(scope="session")
def zidane_bgr():
    import cv2
    return cv2.imread(str(shared_file("images", "zidane.jpg")))


# Property tests are derandomized: CI runs the same examples every time (seeded randomness only).
from hypothesis import settings as _hyp_settings  # noqa: E402

_hyp_settings.register_profile("edgerun", derandomize=True, deadline=None)
_hyp_settings.load_profile("edgerun")
