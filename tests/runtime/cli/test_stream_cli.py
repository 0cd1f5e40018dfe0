"""``edgerun stream``: JSON Lines schema, a valid annotated video, the --view server (real HTTP
client), graceful SIGTERM (drain, flush, exit 0) and a second signal aborting (exit 130)."""
from __future__ import annotations

import json
import signal
import time
import urllib.request

import cv2
import pytest
from stream_fixtures import frames, tiny_detector, write_video

from edgerun.runtime.bench.camera import MJPEGCamera
from edgerun.runtime.bench.faults import CLIProcess
from edgerun.runtime.cli import main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_detector(str(tmp_path_factory.mktemp("m") / "tiny.onnx"))


def _count_frames(path: str) -> int:
    cap = cv2.VideoCapture(path)
    n = 0
    while cap.read()[0]:
        n += 1
    return n


def test_json_lines_schema_and_saved_video(tiny, tmp_path, capsys):
    video = write_video(str(tmp_path / "in.avi"), frames(15))
    out = str(tmp_path / "out.mp4")
    assert main(["stream", tiny, video, "--json", "--track", "--save", out]) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["frame"] for r in recs] == list(range(15))
    r = recs[0]
    assert {"source", "frame", "width", "height", "detections", "speed_ms", "timestamp", "age_ms"} <= set(r)
    assert (r["width"], r["height"]) == (128, 96) and r["age_ms"] >= 0
    assert {"xyxy", "confidence", "class_id", "class_name", "tracker_id"} <= set(r["detections"][0])
    assert _count_frames(out) == 15


def test_view_server_and_graceful_sigterm(tiny, tmp_path):
    video = write_video(str(tmp_path / "long.avi"), frames(400))
    out = str(tmp_path / "out.mp4")
    proc = CLIProcess([tiny, video, "--mode", "every", "--max-fps", "25", "--json", "--save", out, "--view", "0"])
    proc.wait_for(lambda: any("view on" in e for e in proc.err) and len(proc.out) >= 3)
    url = next(e for e in proc.err if "view on" in e).split()[3]
    status = json.load(urllib.request.urlopen(url + "status", timeout=10))
    assert {"fps", "age_p50_ms", "age_p90_ms", "age_p99_ms", "dropped", "reconnects"} <= set(status)
    with urllib.request.urlopen(url + "stream.mjpg", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        head = resp.read(200)
    assert b"--frame" in head and b"image/jpeg" in head
    proc.p.send_signal(signal.SIGTERM)
    assert proc.finish() == 0, "".join(proc.err)
    recs = [json.loads(line) for line in proc.out]
    assert 3 <= len(recs) < 400 and [r["frame"] for r in recs] == list(range(len(recs)))
    assert _count_frames(out) == len(recs)  # every result was written and the file is valid


def test_signals_never_wait_on_a_stuck_reader(tiny):
    """The reader sits in a 20 s network read. SIGTERM drains what is in flight and exits at once
    (no join on the stuck reader); a second SIGTERM, if it lands before that, aborts with 130."""
    with MJPEGCamera(frames=4, fps=8.0, end="stall", stall=30.0) as cam:
        proc = CLIProcess([tiny, cam.url, "--json", "--timeout", "20"])
        proc.wait_for(lambda: len(proc.out) >= 1)
        t0 = time.monotonic()
        proc.p.send_signal(signal.SIGTERM)
        proc.wait_for(lambda: any("stopping" in e for e in proc.err) or proc.p.poll() is not None)
        if proc.p.poll() is None:
            proc.p.send_signal(signal.SIGTERM)
        code = proc.finish(timeout=15)
        assert time.monotonic() - t0 < 10, "waited on the stuck reader"
    assert code in (0, 130), "".join(proc.err)
    if code == 130:
        assert any("aborted" in e for e in proc.err)
    else:
        recs = [json.loads(line) for line in proc.out]
        idx = [r["frame"] for r in recs]  # a live source in `latest` mode may drop (and count) frames
        assert idx == sorted(set(idx)) and len(recs) >= 1, idx
        s = proc.summary()
        assert s["read"] == len(recs) + s["dropped"], s
