"""Export-lane fixtures: the session's model zoo (models built from Ultralytics' yamls, seeded, exported)."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # ultra_zoo is a helper module of this folder


@pytest.fixture(scope="session")
def ultra_zoo(tmp_path_factory):
    """``ultra_zoo.Zoo`` over one folder per test session (``$EDGERUN_ZOO_DIR`` to keep it between runs
    while developing; CI uses a fresh tmp dir). Skips without the ultralytics extra."""
    pytest.importorskip("ultralytics", reason="needs the ultralytics extra (CI's export lane: "
                        "pip install torch==2.14.1 torchvision==0.29.1, then ultralytics==8.4.190)")
    from ultra_zoo import Zoo

    folder = os.environ.get("EDGERUN_ZOO_DIR") or tmp_path_factory.mktemp("ultra_zoo")
    zoo = Zoo(folder)
    yield zoo
    if zoo.timings:
        total = sum(zoo.timings.values())
        print(f"\nultra_zoo: built {len(zoo.timings)} files in {total:.1f} s")
