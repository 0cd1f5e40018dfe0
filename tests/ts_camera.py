"""A loopback camera streaming MPEG-TS (MPEG-4 video, OpenCV's own encoder) over raw TCP, for
``tcp://`` sources: the FFmpeg decode path a network camera takes when it does not send MJPEG.

Each connection gets the whole clip, paced at about ``fps``, then the camera hangs up
(``end="disconnect"``) or keeps the socket open and silent for ``stall`` s (``end="stall"``).
Connections beyond ``max_connections`` are closed at once. 127.0.0.1 only; a context manager.
"""
from __future__ import annotations

import os
import socket
import tempfile
import threading
import time

import cv2
import numpy as np


class TSCamera:
    def __init__(self, images: list[np.ndarray], fps: float = 30.0, end: str = "disconnect",
                 stall: float = 0.0, max_connections: int = 20):
        h, w = images[0].shape[:2]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "clip.ts")
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"FMP4"), fps, (w, h))
            if not writer.isOpened():
                raise RuntimeError("OpenCV cannot write MPEG-TS here")
            for img in images:
                writer.write(img)
            writer.release()
            with open(path, "rb") as f:
                self.data = f.read()
        self.frames, self.fps, self.end, self.stall = len(images), fps, end, stall
        self.max_connections = max_connections
        self.connections = 0
        self.last_byte_at = 0.0  # time.time() of the last byte sent
        self._stop = threading.Event()
        self._srv = socket.create_server(("127.0.0.1", 0))
        self._srv.settimeout(0.1)
        self.url = f"tcp://127.0.0.1:{self._srv.getsockname()[1]}"
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> "TSCamera":
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self._srv.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except socket.timeout:
                continue
            self.connections += 1
            if self.connections > self.max_connections:
                conn.close()
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        chunk = max(188, len(self.data) // self.frames)
        try:
            with conn:
                for i in range(0, len(self.data), chunk):
                    if self._stop.is_set():
                        return
                    conn.sendall(self.data[i:i + chunk])
                    self.last_byte_at = time.time()
                    time.sleep(1.0 / self.fps)
                if self.end == "stall":
                    self._stop.wait(self.stall)
        except OSError:  # the client went away
            pass
