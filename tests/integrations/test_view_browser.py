"""``edgerun stream ... --view`` opened by a real browser: headless Chromium (Debian's ``chromium``)
takes a screenshot of the page while YOLOv8n streams vtest.avi, and dumps the page's DOM after its
script ran. The screenshot (read back with cv2) shows the stream with boxes drawn (pixels of the
person class's box colour, which the raw clip never has), and the status line rendered from
/status (fps, frame age, read/processed/dropped, errors, reconnects). The screenshot's path is
printed (it stays under pytest's tmp dir)."""
from __future__ import annotations

import re
import shutil
import signal
import subprocess

import cv2
import numpy as np
import pytest
from conftest import shared_file

from edgerun.kernels.draw import class_color
from edgerun.runtime.bench.faults import CLIProcess

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
VIDEO_HW = (576, 768)  # vtest.avi, shown at its own size at the page's top left


def chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"  # a fresh profile each run
    return subprocess.run([shutil.which("chromium"), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def box_pixels(bgr: np.ndarray, class_id: int = 0, tol: int = 40) -> int:
    """Pixels within ``tol`` of the class's box colour (boxes and label backgrounds; JPEG shifts it)."""
    return int((np.abs(bgr.astype(np.int16) - np.array(class_color(class_id))).max(axis=2) <= tol).sum())


def test_view_page_in_headless_chromium(tmp_path):
    if shutil.which("chromium") is None:
        pytest.skip("chromium not installed (Debian package chromium, listed in .ci/apt-packages.txt)")
    model, video = shared_file("models", "yolov8n_320_int8dyn.onnx"), shared_file("video", "vtest.avi")
    proc = CLIProcess([str(model), str(video), "--max-fps", "10", "--max-frames", "400", "--view", "0"])
    try:
        proc.wait_for(lambda: any("view on" in e for e in proc.err), timeout=120)
        url = next(e for e in proc.err if "view on" in e).split()[3]
        shot = tmp_path / "view.png"
        r = chromium(tmp_path, "--window-size=800,680", "--virtual-time-budget=4000", f"--screenshot={shot}", url)
        assert shot.exists(), r.stderr[-2000:]
        dom = chromium(tmp_path, "--virtual-time-budget=3000", "--dump-dom", url).stdout
    finally:
        proc.p.send_signal(signal.SIGTERM)
        code = proc.finish(timeout=60)
    print(f"\nview screenshot: {shot}")
    assert code == 0, "".join(proc.err)
    png = cv2.imread(str(shot))
    assert png is not None and png.shape[:2] == (680, 800)
    frame = png[:VIDEO_HW[0], :VIDEO_HW[1]]
    cap = cv2.VideoCapture(str(video))
    raw = max(box_pixels(cap.read()[1]) for _ in range(20))
    cap.release()
    assert frame.std() > 20, "no picture in the <img>"
    assert box_pixels(frame) > 500 > raw, (box_pixels(frame), raw)  # boxes drawn on the stream
    bar = png[VIDEO_HW[0]:]
    assert (bar.max(axis=2) > 120).sum() > 500, "no status text under the stream"
    values = dict(re.findall(r'<b id="(\w+)">([^<]*)</b>', dom))
    assert set(values) >= {"fps", "age_p50_ms", "age_p90_ms", "last_frame_ms", "read", "processed", "dropped",
                           "errors", "reconnects"}, dom[-2000:]
    assert '<span id="state" class="">status ok</span>' in dom, dom[-2000:]
    assert float(values["fps"]) > 0 and int(values["read"]) > 0 and int(values["processed"]) > 0, values
    assert values["dropped"] == "0" and values["errors"] == "0" and values["reconnects"] == "0", values
    assert float(values["age_p50_ms"]) >= 0 and 0 <= float(values["last_frame_ms"]) < 5000, values
