"""Stream faults, measured against the loopback MJPEG camera (``bench/camera.py``) and the real
``edgerun stream`` CLI.

Shared by tests/runtime/streaming/test_stream_faults.py (which asserts on them) and
benchmarks/stream_faults.py (which reports them). Every function returns a dict of figures; times
compare event timestamps (``time.time()``) with the camera's own record of what it did.
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

import cv2
import numpy as np

from ..streaming.runner import StreamRunner
from ..streaming.sources import VideoSource
from .camera import MJPEGCamera

__all__ = ["stall", "outage", "resolution_change", "sink_full", "sigterm_drain", "CLIProcess",
           "synthetic_frames", "write_video"]


def _first(events: list[dict], kind: str) -> float | None:
    return next((e["time"] for e in events if e["kind"] == kind), None)


def stall(model, *, read_timeout: float = 3.0, silent: float | None = None, stall_timeout: float = 3.0) -> dict:
    """The camera sends 10 frames then keeps the connection open, silent for ``silent`` s (default:
    past the read timeout), then closes it: time from its last frame to the stall event (the runner's
    ``stall_timeout``), and to the disconnect. With ``read_timeout`` > ``silent`` the read is still
    blocked when the stall is due: only the runner's watchdog can report it."""
    silent = read_timeout + 10 if silent is None else silent
    with MJPEGCamera(frames=10, end="stall", stall=silent, max_connections=1) as cam:
        src = VideoSource(cam.url, read_timeout=read_timeout, max_reconnects=0)
        runner = StreamRunner(model, mode="latest", stall_timeout=stall_timeout).start(src)
        results = list(runner.results(timeout=read_timeout + silent + 20))
        last = cam.last_frame_at
    ev = list(runner.events)
    t, t_disc = _first(ev, "stall"), _first(ev, "disconnected")
    return {"read_timeout_s": read_timeout, "silent_s": silent, "stall_timeout_s": stall_timeout,
            "read": runner.stats()["read"],
            "results": len(results), "kinds": [e["kind"] for e in ev],
            "stalls": sum(e["kind"] == "stall" for e in ev),
            "detected_after_s": None if t is None else round(t - last, 3),
            "disconnected_after_s": None if t_disc is None else round(t_disc - last, 3)}


def outage(model, *, seconds: float, backoff: tuple[float, float] = (0.25, 5.0),
           open_timeout: float = 3.0) -> dict:
    """10 frames, the camera closes and refuses connections (503) for ``seconds``, then serves 10
    more: time from the disconnect to the reconnection, and from the camera's return to it."""
    with MJPEGCamera(frames=10, end="disconnect", outage=seconds, max_connections=2) as cam:
        src = VideoSource(cam.url, open_timeout=open_timeout, backoff=backoff, max_reconnects=100)
        runner = StreamRunner(model, mode="every_frame", max_frames=20).start(src)
        results = list(runner.results(timeout=seconds + 60))
        down, up = cam.outages[0]
        refused = cam.refused
    ev = list(runner.events)
    t_disc, t_rec = _first(ev, "disconnected"), _first(ev, "reconnected")
    return {"outage_s": seconds, "backoff": list(backoff), "results": len(results), "refused": refused,
            "attempts": sum(e["kind"] == "reconnecting" for e in ev if t_rec is None or e["time"] <= t_rec),
            "disconnect_detected_after_s": None if t_disc is None else round(t_disc - down, 3),
            "reconnected_after_disconnect_s": None if None in (t_disc, t_rec) else round(t_rec - t_disc, 3),
            "reconnected_after_camera_back_s": None if t_rec is None else round(t_rec - up, 3),
            "budget_s": seconds + 8.0}


def resolution_change(model, corrupt: tuple[int, ...] = (), replace: dict[int, bytes] | None = None) -> dict:
    """One connection whose frames change size after 5 of 10: both sizes detected, an event;
    ``corrupt``/``replace``: frames sent as undecodable or hostile JPEG (skipped, ``bad_frame``)."""
    with MJPEGCamera(sizes=((96, 128), (64, 160)), frames=10, change_at=5, max_connections=1,
                     corrupt=corrupt, replace=replace) as cam:
        src = VideoSource(cam.url, max_reconnects=0)
        runner = StreamRunner(model, mode="every_frame").start(src)
        results = list(runner.results(timeout=30))
    return {"results": len(results), "ok": sum(r.ok for r in results),
            "shapes": sorted({tuple(r.detections.image_shape) for r in results if r.ok}),
            "kinds": [e["kind"] for e in runner.events],
            "bad_frames": [e["detail"] for e in runner.events if e["kind"] == "bad_frame"]}


class CLIProcess:
    """``edgerun stream ARGS`` in a child; stdout/stderr lines collected by threads (never blocking)."""

    def __init__(self, args: list[str], stdout=subprocess.PIPE):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.p = subprocess.Popen([sys.executable, "-m", "edgerun.runtime.cli", "stream", *args],
                                  stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                  env=env)
        self.out: list[str] = []
        self.err: list[str] = []
        pipes = [(self.p.stderr, self.err)] + ([(self.p.stdout, self.out)] if self.p.stdout else [])
        self._readers = [threading.Thread(target=lambda s=s, k=k: k.extend(iter(s.readline, "")), daemon=True)
                         for s, k in pipes]
        for t in self._readers:
            t.start()

    def wait_for(self, pred, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > end or self.p.poll() is not None:
                self.p.kill()
                raise AssertionError(f"timed out; stderr: {''.join(self.err)}")
            time.sleep(0.05)

    def finish(self, timeout: float = 60.0) -> int:
        try:
            return self.p.wait(timeout)
        finally:
            self.p.kill()
            for t in self._readers:
                t.join(5)

    def summary(self) -> dict:
        """The CLI's last stderr line: "R read, N result(s), D dropped, E error(s), ..."."""
        line = next((ln for ln in reversed(self.err) if " read, " in ln), "")
        nums = {k: int(v) for v, k in re.findall(r"(\d+) (read|result|dropped|error)", line)}
        return {"read": nums.get("read"), "results": nums.get("result"), "dropped": nums.get("dropped"),
                "errors": nums.get("error"), "line": line.strip()}


def sink_full(model_path: str, video: str, *, save: str | None = None) -> dict:
    """``--json`` into /dev/full (ENOSPC on every write), optionally with ``--save``."""
    with open("/dev/full", "w") as full:
        proc = CLIProcess([model_path, video, "--json", *(["--save", save] if save else [])], stdout=full)
        code = proc.finish(timeout=120)
    err = "".join(proc.err)
    return {"exit": code, "sink_errors": [ln.strip() for ln in proc.err if "sink_error" in ln],
            "traceback": "Traceback" in err or "Exception ignored" in err, **proc.summary(), "stderr": err}


def sigterm_drain(model_path: str, source: str, *, after: int = 5, extra: tuple[str, ...] = ()) -> dict:
    """SIGTERM once ``after`` results are out: every frame read is a JSON record or a counted drop."""
    proc = CLIProcess([model_path, source, "--json", *extra])
    proc.wait_for(lambda: len(proc.out) >= after)
    t0 = time.monotonic()
    proc.p.send_signal(signal.SIGTERM)
    code = proc.finish(timeout=60)
    exit_s = time.monotonic() - t0
    recs = [json.loads(line) for line in proc.out if line.startswith("{")]
    s = proc.summary()
    lost = None if s["read"] is None else s["read"] - len(recs) - (s["dropped"] or 0)
    return {"exit": code, "exit_after_signal_s": round(exit_s, 3), "records": len(recs),
            "in_order": [r["frame"] for r in recs] == sorted(r["frame"] for r in recs),
            "lost": lost, **s, "stderr": "".join(proc.err)}


def write_video(path: str, images: list[np.ndarray], fps: float = 10.0) -> str:
    """MJPG .avi (lossy but deterministic to decode)."""
    h, w = images[0].shape[:2]
    wr = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for im in images:
        wr.write(im)
    wr.release()
    return path


def synthetic_frames(n: int, size: tuple[int, int] = (96, 128), seed: int = 0) -> list[np.ndarray]:
    """``n`` BGR frames of a bright square moving over a dark noisy background."""
    rng = np.random.default_rng(seed)
    h, w = size
    out = []
    for i in range(n):
        img = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
        x = (5 * i) % (w - 30)
        img[h // 3:h // 3 + 30, x:x + 30] = (250, 240, 230)
        out.append(img)
    return out
