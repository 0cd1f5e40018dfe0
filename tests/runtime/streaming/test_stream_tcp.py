"""``tcp://`` network sources through OpenCV's FFmpeg decoder (MPEG-TS, MPEG-4 video) against a
loopback camera: every frame decoded and detected as ``detect()`` would, a hang-up reconnected, a
silent camera reported as a stall within 3.5 s."""
from __future__ import annotations

import numpy as np
import pytest
from stream_fixtures import frames, tiny_detector
from ts_camera import TSCamera

from edgerun.runtime import open_model
from edgerun.runtime.streaming.runner import StreamRunner
from edgerun.runtime.streaming.sources import VideoSource


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return open_model(tiny_detector(str(tmp_path_factory.mktemp("m") / "tiny.onnx")))


def _kinds(runner) -> list[str]:
    return [e["kind"] for e in runner.events]


def test_every_frame_of_an_mpegts_stream_equals_detect(model):
    with TSCamera(frames(30), max_connections=1) as cam:
        src = VideoSource(cam.url, max_reconnects=0)
        assert src.live and not src._raw_jpeg  # FFmpeg decodes this one (not MJPEG)
        runner = StreamRunner(model, mode="every_frame", keep_frames=True).start(src)
        results = list(runner.results(timeout=30))
    assert len(results) == 30 and all(r.ok for r in results), _kinds(runner)
    assert [r.index for r in results] == list(range(30))
    for r in results:
        assert r.image.shape == (96, 128, 3)
        ref = model.detect(r.image)
        assert np.array_equal(ref.xyxy, r.detections.xyxy) and np.array_equal(ref.confidence, r.detections.confidence)


def test_hang_up_is_reconnected(model):
    with TSCamera(frames(20), max_connections=2) as cam:
        src = VideoSource(cam.url, backoff=(0.05, 0.2), max_reconnects=2)
        runner = StreamRunner(model, mode="every_frame").start(src)
        results = list(runner.results(timeout=60))
    kinds = _kinds(runner)
    assert kinds.count("reconnected") == 1 and "gave_up" in kinds and kinds[-1] == "end", kinds
    assert len(results) == 40 and all(r.ok for r in results), (len(results), kinds)


def test_silent_camera_is_a_stall_within_3_5_s(model):
    with TSCamera(frames(10), end="stall", stall=6.0, max_connections=1) as cam:
        src = VideoSource(cam.url, max_reconnects=0)
        runner = StreamRunner(model, mode="latest").start(src)
        results = list(runner.results(timeout=30))
        last = cam.last_byte_at
    stall = next(e["time"] for e in runner.events if e["kind"] == "stall")
    assert results and 2.9 <= stall - last <= 3.5, (stall - last, _kinds(runner))
    assert "disconnected" in _kinds(runner)
