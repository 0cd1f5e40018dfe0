"""Soak, short: 500 frames through Detector.detect; RSS growth bounded (generously), fds flat.
The long run is ``python benchmarks/soak.py --frames N`` on the real model."""
from __future__ import annotations

import sys

from conftest import shared_file
from hostile_models import busy_model
from reliability_util import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from soak import soak, video_frames  # noqa: E402

FRAMES = 500
RSS_GROWTH_LIMIT_MB = 40  # after warm-up; a per-frame leak of 100 KB would show as 50 MB


def test_soak_short(tmp_path):
    from edgerun.runtime import Detector

    frames = video_frames(24, shared_file("video", "vtest.avi"))
    det = Detector.from_path(str(busy_model(tmp_path)))  # real pipeline, millisecond inference
    rep = soak(det, frames, FRAMES, warmup=50)
    assert rep["boxes"] > 0
    assert rep["fds_end"] == rep["fds_start"], rep
    assert rep["rss_growth_mb"] < RSS_GROWTH_LIMIT_MB, rep
