"""RTSP for real: GStreamer's RTSP server (tests/rtsp_camera.py, a child process of Debian's python3)
serving H.264 made from ../shared/video/vtest.avi on 127.0.0.1, read by edgerun's stream source and
by ``edgerun stream rtsp://...``.

- every frame, over TCP and over UDP (checked: this process really holds UDP sockets then), equals
  ``detect()`` on the frame the stream handed out;
- the CLI's JSON over RTSP equals ``detect()`` on the same frames decoded by a second session
  (every session gets the clip from its first frame and H.264 decoding is exact);
- the server stopped for 5 s and restarted at another size: ``disconnected``, ``reconnected``
  within outage + 8 s, ``resolution``; every frame read is a result or a counted drop.
Skipped with the reason when the Debian packages are missing (.ci/apt-packages.txt).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import shared_file
from rtsp_camera import RTSPCamera, missing

from edgerun.runtime import open_model
from edgerun.runtime.streaming.runner import StreamRunner
from edgerun.runtime.streaming.sources import VideoSource

MODEL = ("models", "yolov8n_320_int8dyn.onnx")
OUTAGE = 5.0


@pytest.fixture(scope="module")
def video():
    reason = missing()
    if reason:
        pytest.skip(reason)
    return str(shared_file("video", "vtest.avi"))


@pytest.fixture(scope="module")
def model():
    return open_model(str(shared_file(*MODEL)))


def udp_sockets() -> int:
    """UDP sockets this process holds (its socket fds found in /proc/net/udp)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            m = re.match(r"socket:\[(\d+)\]", os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
        if m:
            inodes.add(m.group(1))
    with open("/proc/net/udp") as f:
        return sum(line.split()[9] in inodes for line in f.readlines()[1:])


def same(a, b) -> bool:
    return (np.array_equal(a.xyxy, b.xyxy) and np.array_equal(a.class_id, b.class_id)
            and np.array_equal(a.confidence, b.confidence))


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_every_frame_equals_detect(video, model, transport):
    with RTSPCamera(video) as cam:
        src = VideoSource(cam.url, rtsp_transport=transport, max_reconnects=0)
        udp = udp_sockets()  # the session is set up: RTP flows over UDP ports only with "udp"
        runner = StreamRunner(model, mode="every_frame", keep_frames=True, max_frames=25).start(src)
        results = list(runner.results(timeout=60))
        src.close()
    assert (udp > 0) == (transport == "udp"), udp
    assert len(results) == 25 and all(r.ok for r in results), [e["kind"] for e in runner.events]
    assert runner.stats()["read"] == 25 and runner.stats()["dropped"] == 0
    for r in results:
        assert r.image.shape == (288, 384, 3)
        assert same(model.detect(r.image), r.detections), r.index
    assert sum(len(r.detections) for r in results) >= 25  # vtest's pedestrians are found


def edgerun(*args: str, **kw) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("edgerun")
    return subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_cli_json_equals_detect_on_the_same_frames(video, model):
    n = 20
    with RTSPCamera(video) as cam:
        p = edgerun("stream", str(shared_file(*MODEL)), cam.url, "--rtsp-transport", "tcp", "--mode", "every",
                    "--max-frames", str(n), "--json")
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        cap = cv2.VideoCapture(cam.url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 10000])
        frames = [cap.read()[1] for _ in range(n)]
        cap.release()
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["frame"] for r in records] == list(range(n)), err
    assert f"{n} read, {n} result(s), 0 dropped, 0 error(s)" in err
    for rec, frame in zip(records, frames):
        assert frame is not None and (rec["width"], rec["height"]) == (384, 288)
        assert rec["detections"] == model.detect(frame).to_records(model.spec.names), rec["frame"]


def test_server_restart_and_resolution_change(video):
    """Stop the server for 5 s, bring it back at 320x240: the CLI (default mode: latest) reports
    disconnected / reconnected / resolution, reconnects within outage + 8 s, and accounts for every
    frame it read (results + counted drops) when stopped by Ctrl-C after 10 frames at the new size."""
    lines: list[tuple[float, str]] = []
    records: list[dict] = []
    with RTSPCamera(video) as cam:
        p = edgerun("stream", str(shared_file(*MODEL)), cam.url, "--rtsp-transport", "tcp", "--json")
        stderr = threading.Thread(target=lambda: lines.extend((time.time(), ln) for ln in p.stderr), daemon=True)
        stderr.start()
        killer = threading.Timer(90, p.kill)  # the bound, should the stream never come back
        killer.start()
        try:
            for line in p.stdout:
                records.append(json.loads(line))
                if len(records) == 5:
                    cam.stop()
                    time.sleep(OUTAGE)
                    cam.restart(size=(320, 240))
                    restarted = cam.started_at
                if sum(r["width"] == 320 for r in records) == 10 and p.poll() is None:
                    p.send_signal(signal.SIGINT)  # drain and exit 0
            p.wait(timeout=30)
        finally:
            killer.cancel()
            if p.poll() is None:
                p.kill()
                p.wait()
        stopped = cam.stopped_at
    stderr.join(10)
    text = "".join(ln for _, ln in lines)
    assert p.returncode == 0, text

    def first(kind: str) -> float:
        return next((t for t, ln in lines if ln.startswith(f"edgerun: {kind}:")), float("inf"))

    reconnect = first("reconnected") - stopped
    print(f"\nRTSP: stopped {OUTAGE:.0f} s; restarted after {restarted - stopped:.2f} s, disconnected seen "
          f"{first('disconnected') - stopped:.2f} s after the stop, reconnected {reconnect:.2f} s after it "
          f"({first('reconnected') - restarted:.2f} s after the restart)")
    assert first("disconnected") < first("reconnected") <= first("resolution") < float("inf"), text
    assert reconnect <= OUTAGE + 8.0, text
    assert "384x288 -> 320x240" in text
    m = re.search(r"(\d+) read, (\d+) result\(s\), (\d+) dropped, 0 error\(s\), (\d+) reconnect", text)
    assert m, text
    read, results, dropped, reconnects = map(int, m.groups())
    print(f"RTSP: {read} read = {results} results + {dropped} dropped, {reconnects} reconnect(s)")
    assert results + dropped == read and results == len(records) and reconnects == 1, text
    sizes = [(r["width"], r["height"]) for r in records]
    assert sizes[0] == (384, 288) and sizes[-1] == (320, 240) and set(sizes) == {(384, 288), (320, 240)}


def test_transport_is_validated():
    """No server needed: a bad transport, or one for a non-RTSP source, is refused before opening."""
    from edgerun.kernels.errors import EdgerunValueError

    with pytest.raises(EdgerunValueError, match=r"rtsp_transport: expected one of tcp, udp for an rtsp:// URL, "
                                                r"got 'quic'"):
        VideoSource("rtsp://127.0.0.1:9/cam", rtsp_transport="quic")
    with pytest.raises(EdgerunValueError, match="got 'udp' for 'http://127.0.0.1:9/x.mjpg'"):
        VideoSource("http://127.0.0.1:9/x.mjpg", rtsp_transport="udp")
