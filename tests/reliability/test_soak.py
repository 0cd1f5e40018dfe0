"""Soak, short: 500 frames through Detector.detect and 3,000 through StreamRunner (every_frame);
RSS growth bounded (generously), fds flat. The long runs are ``benchmarks/soak.py`` and
``benchmarks/soak_stream.py --frames 108000`` (one hour of 30 fps)."""
from __future__ import annotations

from conftest import shared_file
from hostile_models import busy_model
from reliability_util import ROOT

from edgerun.runtime.bench.soak import first_frames, soak, stream_soak

FRAMES = 500
RSS_GROWTH_LIMIT_MB = 40  # after warm-up; a per-frame leak of 100 KB would show as 50 MB


def test_soak_short(tmp_path):
    from edgerun.runtime import Detector

    frames = first_frames(shared_file("video", "vtest.avi"), 24)
    det = Detector.from_path(str(busy_model(tmp_path)))  # real pipeline, millisecond inference
    rep = soak(det, frames, FRAMES, warmup=50)
    assert rep["boxes"] > 0
    assert rep["fds_end"] == rep["fds_start"], rep
    assert rep["rss_growth_mb"] < RSS_GROWTH_LIMIT_MB, rep


def test_stream_soak_short():
    """The bundled demo detector, synthetic 640x480 frames pushed with submit()."""
    rep = stream_soak(str(ROOT / "runtime" / "data" / "demo.onnx"), 3000, 500, "bgr")
    assert rep["results"] == 3000, rep["results"]
    assert rep["fds_min"] == rep["fds_max"], rep
    assert rep["rss_growth_mb"] < RSS_GROWTH_LIMIT_MB, rep
    assert rep["frame_buffers"] <= 16, rep  # buffers are reused, not allocated per frame
