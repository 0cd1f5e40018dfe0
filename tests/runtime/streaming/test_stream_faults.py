"""Stream faults with the issue's bounds: a stall is reported after the runner's stall_timeout (0.5 s
here) and before the backend's read gives up, a camera down for a while is back within outage + 8 s, a mid-stream resolution change
is followed, a failing sink (/dev/full: ENOSPC) is an event and the stream goes on or stops
cleanly, and SIGTERM loses no result. Figures over longer outages: benchmarks/stream_faults.py."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import pytest
from stream_fixtures import frames, tiny_detector, write_video

from edgerun.runtime import open_model
from edgerun.runtime.bench.camera import MJPEGCamera
from edgerun.runtime.bench.faults import outage, resolution_change, sigterm_drain, sink_full, stall

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "reliability"))
from badimages import jpeg_bomb  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_detector(str(tmp_path_factory.mktemp("m") / "tiny.onnx"))


@pytest.fixture(scope="module")
def model(tiny):
    return open_model(tiny)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(str(tmp_path_factory.mktemp("v") / "in.avi"), frames(60))


STALL = 0.5  # the runner's stall_timeout in these tests (default 3 s; benchmarks/stream_faults.py times that)


def test_stall_detected_after_stall_timeout_before_the_read_timeout(model):
    # The read times out at 4 x STALL: a stall event before that can only come from the watchdog.
    r = stall(model, read_timeout=4 * STALL, stall_timeout=STALL)
    assert r["read"] == 10 and r["results"] >= 1 and "stall" in r["kinds"] and "disconnected" in r["kinds"], r
    assert r["stalls"] == 1 and STALL - 0.02 <= r["detected_after_s"] < r["disconnected_after_s"], r
    assert r["detected_after_s"] < r["read_timeout_s"], r


def test_stall_reported_while_the_read_is_still_blocked(model):
    """Read timeout 20 x STALL, camera silent for 4 x STALL then gone: the watchdog reports the stall
    after STALL, whatever the backend does (a USB camera's driver may block far longer)."""
    r = stall(model, read_timeout=20 * STALL, silent=4 * STALL, stall_timeout=STALL)
    assert r["stalls"] == 1 and STALL - 0.02 <= r["detected_after_s"] < r["silent_s"], r
    assert r["disconnected_after_s"] >= r["silent_s"] - 0.02, r  # the read only ended when the camera hung up


def test_outage_reconnects_within_outage_plus_8_s(model):
    r = outage(model, seconds=2.0)
    assert r["results"] == 20 and r["refused"] >= 1, r
    assert r["attempts"] >= 2, r  # refused at least once: backing off
    assert r["reconnected_after_disconnect_s"] <= r["budget_s"], r
    assert r["reconnected_after_camera_back_s"] >= 0, r


def test_resolution_change_mid_connection(model):
    r = resolution_change(model)
    assert r["results"] == r["ok"] == 10, r
    assert r["shapes"] == [(64, 160), (96, 128)] and "resolution" in r["kinds"], r


def test_corrupt_and_bomb_jpeg_packets_are_skipped_not_a_disconnect(model):
    """Garbage at frames 2 and 7, a JPEG declaring 60000x60000 at frame 4: refused before decoding
    by the same pixel limit as image files, the stream goes on."""
    bomb = jpeg_bomb(cv2.imencode(".jpg", frames(1)[0])[1].tobytes())
    r = resolution_change(model, corrupt=(2, 7), replace={4: bomb})
    assert r["results"] == r["ok"] == 7, r
    assert r["kinds"].count("bad_frame") == 3 and "reconnecting" not in r["kinds"], r
    assert sum("decompression bomb" in d for d in r["bad_frames"]) == 1, r["bad_frames"]


def test_json_sink_on_dev_full_stops_cleanly(tiny, video):
    r = sink_full(tiny, video)
    assert r["exit"] == 1 and not r["traceback"], r["stderr"]
    assert len(r["sink_errors"]) == 1 and "No space left on device" in r["sink_errors"][0], r["stderr"]
    assert "no output left, stopping" in r["sink_errors"][0]
    assert r["results"] is not None and r["results"] < 60, r["line"]


def test_json_sink_fails_video_sink_goes_on(tiny, video, tmp_path):
    out = str(tmp_path / "out.mp4")
    r = sink_full(tiny, video, save=out)
    assert r["exit"] == 1 and not r["traceback"], r["stderr"]
    assert len(r["sink_errors"]) == 1 and "continuing with video" in r["sink_errors"][0], r["stderr"]
    assert r["results"] == r["read"] == 60, r["line"]
    cap = cv2.VideoCapture(out)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 60


def test_unopenable_video_sink_is_an_event(tiny, video, tmp_path):
    # a folder that does not exist is refused before the stream starts (test_cli_errors.py);
    # a file OpenCV cannot open for writing (no container for the extension) is a sink error
    r = sink_full(tiny, video, save=str(tmp_path / "out.no-such-container"))
    assert r["exit"] == 1 and not r["traceback"], r["stderr"]
    assert [e for e in r["sink_errors"] if "video" in e and "cannot open" in e], r["stderr"]
    assert not os.path.exists(tmp_path / "out.no-such-container")


def test_sigterm_on_a_file_loses_nothing(tiny, tmp_path):
    long = write_video(str(tmp_path / "long.avi"), frames(400))
    r = sigterm_drain(tiny, long, extra=("--max-fps", "30"))
    assert r["exit"] == 0 and r["in_order"], r["stderr"]
    assert r["lost"] == 0 and r["dropped"] == 0 and 5 <= r["records"] < 400, r


def test_sigterm_on_a_live_camera_loses_nothing(tiny):
    with MJPEGCamera(frames=2000, fps=30.0) as cam:
        r = sigterm_drain(tiny, cam.url)
    assert r["exit"] == 0 and r["in_order"], r["stderr"]
    assert r["lost"] == 0 and r["records"] >= 5, r
