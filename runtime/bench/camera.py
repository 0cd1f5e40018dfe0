"""A loopback MJPEG-over-HTTP camera for stream fault runs and tests (127.0.0.1 only, stopped by its user).

Each connection streams ``frames`` JPEG frames at ``fps`` then, per ``script``, disconnects or
stalls; ``sizes[i]`` is the resolution served on connection i (a new size = resolution change),
``change_at`` switches to the next size mid-connection after that many frames; ``outage``: after
a connection ends, every new one gets 503 for that many seconds (the camera is down).
``last_frame_at`` and ``outages`` ([(start, end)]): ``time.time()`` of the last frame sent and of
each outage, for timing a client's stall detection and reconnection against its events' times.
``corrupt``: frame numbers (per connection) sent as undecodable JPEG packets; ``replace``: frame
number -> the bytes to send instead (e.g. a JPEG declaring a huge size).
"""
from __future__ import annotations

import http.server
import threading
import time

import cv2
import numpy as np

__all__ = ["MJPEGCamera"]


class MJPEGCamera:
    """The camera; a context manager (``with MJPEGCamera(...) as cam: VideoSource(cam.url)``)."""

    def __init__(self, sizes=((240, 320),), frames: int = 30, fps: float = 30.0, end: str = "disconnect",
                 stall: float = 0.0, change_at: int | None = None, max_connections: int = 20,
                 outage: float = 0.0, corrupt: tuple[int, ...] = (), replace: dict[int, bytes] | None = None):
        self.sizes, self.frames, self.fps, self.end = list(sizes), frames, fps, end
        self.stall, self.change_at, self.max_connections = stall, change_at, max_connections
        self.outage, self.corrupt, self.replace = outage, set(corrupt), dict(replace or {})
        self.connections = 0
        self.refused = 0
        self.sent = 0
        self.last_frame_at = 0.0
        self.up_at = 0.0
        self.outages: list[tuple[float, float]] = []
        self._stop = threading.Event()
        cam = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                cam._serve(self)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/video.mjpg"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> "MJPEGCamera":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def _frame(self, h: int, w: int, i: int) -> bytes:
        img = np.full((h, w, 3), 60, np.uint8)
        x = (i * 7) % max(1, w - 40)
        cv2.rectangle(img, (x, h // 3), (x + 40, h // 3 + 40), (0, 200, 255), -1)
        return cv2.imencode(".jpg", img)[1].tobytes()

    def _serve(self, req) -> None:
        if time.time() < self.up_at:  # down: refused without counting as a connection
            self.refused += 1
            req.send_error(503)
            return
        conn = self.connections
        self.connections += 1
        if conn >= self.max_connections:
            req.send_error(503)
            return
        req.send_response(200)
        req.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        req.end_headers()
        size = conn % len(self.sizes)
        try:
            for i in range(self.frames):
                if self._stop.is_set():
                    return
                if self.change_at is not None and i == self.change_at:
                    size = (size + 1) % len(self.sizes)
                jpg = self._frame(*self.sizes[size], i)
                if i in self.corrupt:  # a packet of the right framing whose JPEG is garbage
                    jpg = b"\xff\xd8" + bytes(range(256)) * 4
                jpg = self.replace.get(i, jpg)
                req.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg))
                req.wfile.write(jpg + b"\r\n")
                req.wfile.flush()
                self.sent += 1
                self.last_frame_at = time.time()
                time.sleep(1.0 / self.fps)
            if self.end == "stall":
                self._stop.wait(self.stall)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            if self.outage > 0:
                now = time.time()
                self.up_at = now + self.outage
                self.outages.append((now, self.up_at))
