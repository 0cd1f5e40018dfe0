"""``--view``: the annotated stream as MJPEG over HTTP on 127.0.0.1, plus a ``/status`` JSON.

    GET /            a plain page (no build step, no external files): the stream and a status line
                     (fps, frame age, frames read/processed/dropped, errors, reconnects) polled from /status
    GET /stream.mjpg multipart/x-mixed-replace JPEG frames (the newest frame; slow clients skip)
    GET /status      {"fps", "age_p50_ms", "age_p90_ms", "age_p99_ms", "dropped", "reconnects", ...,
                      "view_frames": frames published, "last_frame_ms": ms since the newest one}
"""
from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Callable

import numpy as np

__all__ = ["ViewServer"]

_PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>edgerun view</title>
<style>
body { margin: 0; background: #111; color: #ddd; font: 15px/1.4 monospace; }
#video { display: block; }
#bar { padding: 6px 8px; }
#bar b { color: #7f7; font-weight: normal; }
#bar .bad { color: #f77; }
</style></head>
<body>
<img id="video" alt="edgerun stream">
<div id="bar">
fps <b id="fps">-</b> &middot; frame age p50 <b id="age_p50_ms">-</b> ms, p90 <b id="age_p90_ms">-</b> ms
&middot; newest frame <b id="last_frame_ms">-</b> ms ago<br>
read <b id="read">-</b> &middot; processed <b id="processed">-</b> &middot; dropped <b id="dropped">-</b>
&middot; errors <b id="errors">-</b> &middot; reconnects <b id="reconnects">-</b> &middot; <span id="state">waiting</span>
</div>
<script>
const keys = ["fps", "age_p50_ms", "age_p90_ms", "last_frame_ms", "read", "processed", "dropped", "errors", "reconnects"];
const state = document.getElementById("state");
async function poll() {
  try {
    const s = await (await fetch("status", {cache: "no-store"})).json();
    for (const k of keys) document.getElementById(k).textContent = s[k] ?? "-";
    state.textContent = "status ok"; state.className = "";
  } catch (e) {
    state.textContent = "no status (stream ended?)"; state.className = "bad";
  }
  setTimeout(poll, 500);
}
window.addEventListener("load", () => {
  document.getElementById("video").src = "stream.mjpg";  // after load: the page itself finishes loading
  poll();
});
</script>
</body></html>
"""


class ViewServer:
    """Serves the newest published frame; only ever binds 127.0.0.1."""

    def __init__(self, port: int = 0, status: Callable[[], dict] = dict, quality: int = 80):
        self._status, self._quality = status, quality
        self._cv = threading.Condition()
        self._jpeg: bytes | None = None
        self._seq = 0
        self._published = 0.0  # time.monotonic() of the newest frame
        self._closed = False
        view = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                view._handle(self)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="edgerun-view", daemon=True)
        self._thread.start()

    def publish(self, image: np.ndarray) -> None:
        """Encode and offer a BGR frame to the viewers."""
        import cv2

        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self._quality])
        if ok:
            with self._cv:
                self._jpeg, self._seq, self._published = buf.tobytes(), self._seq + 1, time.monotonic()
                self._cv.notify_all()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def _handle(self, req) -> None:
        path = req.path.split("?", 1)[0]
        if path == "/status":
            with self._cv:
                view = {"view_frames": self._seq,
                        "last_frame_ms": round((time.monotonic() - self._published) * 1e3) if self._seq else None}
            body = json.dumps({**self._status(), **view}).encode()
            self._send(req, "application/json", body)
        elif path == "/":
            self._send(req, "text/html", _PAGE)
        elif path == "/stream.mjpg":
            self._stream(req)
        else:
            req.send_error(404)

    @staticmethod
    def _send(req, ctype: str, body: bytes) -> None:
        req.send_response(200)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        req.send_header("Cache-Control", "no-store")
        req.end_headers()
        req.wfile.write(body)

    def _stream(self, req) -> None:
        req.send_response(200)
        req.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        req.send_header("Cache-Control", "no-store")
        req.end_headers()
        seen = 0
        try:
            while True:
                with self._cv:
                    self._cv.wait_for(lambda: self._closed or (self._jpeg is not None and self._seq != seen), 1.0)
                    if self._closed:
                        return
                    if self._jpeg is None or self._seq == seen:
                        continue
                    jpeg, seen = self._jpeg, self._seq
                req.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
                req.wfile.write(jpeg + b"\r\n")
                req.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
