"""A real RTSP camera for the tests: GStreamer's RTSP server (gst-rtsp-server, Debian's
``gir1.2-gst-rtsp-server-1.0`` + ``python3-gst-1.0``) serving H.264 (x264enc) made from a video
file, on 127.0.0.1.

The server runs as a child process of Debian's /usr/bin/python3 (PyGObject lives there, not in the
project's venv): ``RTSPCamera`` starts it, restarts it on the same port (optionally at another size)
and always stops it. Run as a script it is the server itself:

    /usr/bin/python3 tests/rtsp_camera.py VIDEO --size 384x288 [--port 0]

Every client gets the clip from its first frame (so two sessions decode the same frames), paced in
real time at the clip's rate, each frame scaled to ``--size``. Prints ``port N`` once it listens.
A camera that changes resolution is this server restarted at another ``--size`` (an RTSP session
restarts on such a change; a mid-stream SPS change is scaled back to the opening size by OpenCV's
FFmpeg reader, so no reader of OpenCV frames can see it).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

SYSTEM_PYTHON = "/usr/bin/python3"
PATH = "/cam"


def missing() -> str | None:
    """Why the RTSP server cannot run here (a missing Debian package), or None when it can."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} not found (Debian's python3 carries PyGObject for GStreamer)"
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
             "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
             "import sys; need = ['avidemux', 'avdec_msmpeg4', 'x264enc', 'rtph264pay', 'videoscale'];"
             "lost = [e for e in need if Gst.ElementFactory.find(e) is None];"
             "print(' '.join(lost)); sys.exit(1 if lost else 0)")
    try:
        r = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot probe GStreamer with {SYSTEM_PYTHON}: {exc}"
    if r.returncode:
        lost = r.stdout.strip()
        return ("GStreamer RTSP server not installed (Debian packages gir1.2-gst-rtsp-server-1.0, "
                "python3-gst-1.0, gstreamer1.0-plugins-{base,good,ugly}, gstreamer1.0-libav)"
                + (f": missing elements {lost}" if lost else f": {r.stderr.strip().splitlines()[-1:]}"))
    return None


class RTSPCamera:
    """The server process: ``url``, ``start()``, ``stop()``, ``restart(size=...)``; a context manager
    that always stops it. ``stopped_at``/``started_at``: time.time() of the last stop/ready."""

    def __init__(self, video: str, size: tuple[int, int] = (384, 288)):
        self.video, self.size = str(video), size
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.started_at = self.stopped_at = 0.0

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{PATH}"

    def start(self, timeout: float = 30.0) -> "RTSPCamera":
        args = [SYSTEM_PYTHON, __file__, self.video, "--port", str(self.port), "--size", "%dx%d" % self.size]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # "port N" once listening (EOF if it died)
        if not line.startswith("port "):
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.stop()
            raise RuntimeError(f"RTSP server did not start: {line!r} {err[-2000:]}")
        self.port = int(line.split()[1])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # listening for real (the port is bound before "port N")
            try:
                socket.create_connection(("127.0.0.1", self.port), 1.0).close()
                break
            except OSError:
                time.sleep(0.05)
        self.started_at = time.time()
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            for f in (self.proc.stdout, self.proc.stderr):
                f.close()
            self.proc = None
            self.stopped_at = time.time()

    def restart(self, size: tuple[int, int] | None = None) -> "RTSPCamera":
        self.stop()
        self.size = size or self.size
        return self.start()

    def __enter__(self) -> "RTSPCamera":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _serve(argv: list[str]) -> None:  # runs under /usr/bin/python3 with PyGObject
    import argparse
    import signal

    import gi
    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    p = argparse.ArgumentParser()
    p.add_argument("video")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--size", default="384x288")
    a = p.parse_args(argv)
    Gst.init(None)
    w, h = map(int, a.size.split("x"))
    launch = (f"( filesrc location={a.video} ! avidemux ! decodebin ! videoconvert ! videoscale "
              f"! capsfilter name=caps caps=video/x-raw,width={w},height={h},format=I420 "
              "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bframes=0 threads=1 "
              "! rtph264pay name=pay0 pt=96 config-interval=1 )")
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(a.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(False)  # every client: the clip from its first frame

    server.get_mount_points().add_factory(PATH, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{a.port}")
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    print(f"port {server.get_bound_port()}", flush=True)
    loop.run()


if __name__ == "__main__":
    _serve(sys.argv[1:])
