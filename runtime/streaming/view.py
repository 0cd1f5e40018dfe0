"""``--view``: the annotated stream as MJPEG over HTTP on 127.0.0.1, plus a ``/status`` JSON.

    GET /            a tiny HTML page showing the stream
    GET /stream.mjpg multipart/x-mixed-replace JPEG frames (the newest frame; slow clients skip)
    GET /status      {"fps", "age_p50_ms", "age_p90_ms", "age_p99_ms", "dropped", "reconnects", ...}
"""
from __future__ import annotations

import http.server
import json
import threading
from typing import Callable

import numpy as np

__all__ = ["ViewServer"]

_PAGE = b"<html><body style='margin:0;background:#111'><img src='/stream.mjpg'></body></html>"


class ViewServer:
    """Serves the newest published frame; only ever binds 127.0.0.1."""

    def __init__(self, port: int = 0, status: Callable[[], dict] = dict, quality: int = 80):
        self._status, self._quality = status, quality
        self._cv = threading.Condition()
        self._jpeg: bytes | None = None
        self._seq = 0
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
                self._jpeg, self._seq = buf.tobytes(), self._seq + 1
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
            body = json.dumps(self._status()).encode()
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
