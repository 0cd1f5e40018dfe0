"""Stream sources against a loopback MJPEG camera: disconnect -> reconnect with backoff,
stall -> read timeout -> reconnect, resolution change on reconnect, open timeout, image folders."""
from __future__ import annotations

import socket

import cv2
import pytest
from stream_fixtures import frames, tiny_detector

from edgerun.runtime import open_model
from edgerun.runtime.bench.camera import MJPEGCamera
from edgerun.runtime.sources import ImageError
from edgerun.runtime.streaming.runner import StreamRunner
from edgerun.runtime.streaming.sources import ImageSource, VideoSource, open_source


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return open_model(tiny_detector(str(tmp_path_factory.mktemp("m") / "tiny.onnx")))


def _kinds(events):
    return [e["kind"] for e in events]


def test_disconnect_reconnect_and_resolution_change(model):
    with MJPEGCamera(sizes=((96, 128), (64, 160)), frames=8, max_connections=3) as cam:
        src = VideoSource(cam.url, read_timeout=2.0, backoff=(0.05, 0.2), max_reconnects=3)
        runner = StreamRunner(model, mode="every_frame").start(src)
        results = list(runner.results(timeout=30))
    kinds = _kinds(runner.events)
    assert kinds.count("reconnected") >= 2 and "resolution" in kinds and kinds[-1] == "end"
    assert "gave_up" in kinds  # the camera refuses the 4th connection
    shapes = {r.detections.image_shape for r in results if r.ok}
    assert shapes == {(96, 128), (64, 160)}
    assert [r.index for r in results] == list(range(len(results))) and len(results) >= 16
    assert runner.stats()["reconnects"] >= 2


def test_stall_is_detected_and_reconnected(model):
    with MJPEGCamera(frames=4, end="stall", stall=4.0, max_connections=2) as cam:
        src = VideoSource(cam.url, read_timeout=1.0, backoff=(0.05, 0.1), max_reconnects=1)
        runner = StreamRunner(model, mode="latest").start(src)
        results = list(runner.results(timeout=30))
    kinds = _kinds(runner.events)
    assert "disconnected" in kinds and "reconnected" in kinds, kinds
    assert results and all(r.ok for r in results)


def test_open_timeout_on_a_dead_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens
    with pytest.raises(ImageError, match="cannot open video source"):
        VideoSource(f"http://127.0.0.1:{port}/x.mjpg", open_timeout=1.0)


def test_image_folder_skips_bad_files(tmp_path, model):
    for i, im in enumerate(frames(3)):
        cv2.imwrite(str(tmp_path / f"{i}.png"), im)
    (tmp_path / "9.jpg").write_bytes(b"not a jpeg")
    src = open_source(str(tmp_path))
    assert isinstance(src, ImageSource) and not src.live
    runner = StreamRunner(model).start(src)
    assert len(list(runner.results(timeout=30))) == 3
    assert _kinds(runner.events) == ["bad_file"]


def test_open_source_kinds(tmp_path):
    with pytest.raises(ImageError):
        open_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(Exception, match="source: expected"):
        open_source(3.5)
