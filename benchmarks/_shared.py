"""Where the benchmarks find the real models/photos/video: ``$EDGERUN_SHARED`` if set, else
``../shared`` beside the project. Every benchmark takes ``SHARED`` from here (tests have the same rule
in ``tests/helpers.shared_dir``; benchmarks never import tests)."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``$EDGERUN_SHARED``, else ``../shared`` beside the project (it may be absent)."""
    env = os.environ.get("EDGERUN_SHARED")
    return Path(env) if env else ROOT.parent / "shared"


SHARED = shared_dir()
