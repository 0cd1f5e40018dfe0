"""A detector for Frigate (the open-source NVR) over its ZMQ detector protocol
(``edgerun serve MODEL --frigate-zmq tcp://127.0.0.1:5555``; Frigate: ``detectors: {x: {type: zmq,
endpoint: ...}}``).

The protocol, as Frigate's ``zmq`` detector plugin speaks it (a REQ socket that connects; edgerun
binds a REP socket and answers every request exactly once):

- inference: multipart ``[header, tensor]``; the header is JSON ``{"shape": [1, H, W, 3] or
  [1, 3, H, W], "dtype": "uint8" | "float32", "model_type": "yologeneric" | ...}``, the tensor
  its raw C-order bytes: Frigate's square region, resized to the model's width x height (no
  letterbox), RGB by default (``input_pixel_format``), uint8 (``input_dtype: int``), float/255
  (``float``) or float 0..255 (``float_denorm``). Reply: ``[{"shape": [20, 6], "dtype":
  "float32"}, 480 bytes]``: up to 20 rows ``[class_id, score, ymin, xmin, ymax, xmax]``, the box
  normalised to 0..1 by the request's H/W, best score first, zero rows after the last detection.
- ``{"model_request": true, "model_name": N}`` -> ``{"model_available", "model_loaded"}``; on a
  missing model Frigate sends ``[{"model_data": true, "model_name": N}, file bytes]`` -> saved in
  ``model_dir``, loaded, ``{"model_saved", "model_loaded"}``.
- A request edgerun cannot serve (garbage header, wrong shape/dtype/size, no model yet) is answered
  with the zero rows and an ``"error"`` in the header: Frigate reads it as "no detections"; the
  server goes on.

The image fed to ``detect()`` is the request tensor back as (H, W, 3) uint8 in the request's
channel order (floats x255 when they look normalised: max <= 1), through a ``stretch`` resize to
the model input: the identity when Frigate's width/height are the model's.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from typing import Any

import numpy as np

from edgerun.kernels.errors import EdgerunError

from . import require

__all__ = ["FrigateError", "FrigateDetector", "FrigateServer", "ROWS", "check_endpoint"]

ROWS = 20  # Frigate's detector output: (20, 6) float32
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


class FrigateError(EdgerunError):
    """A request that cannot be served, or an endpoint that cannot be bound."""


def _default_model_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "edgerun", "frigate")


class FrigateDetector:
    """Frigate's requests -> replies with an edgerun detection model (no sockets: see ``handle``).

    ``model``: an ONNX path served whatever model name Frigate asks for (None: wait for Frigate to
    name or transfer one into ``model_dir``); ``pixel_format``: Frigate's ``input_pixel_format``
    (rgb | bgr); ``options``: detector options (``score_threshold``, ``iou_threshold``, ``threads``)."""

    def __init__(self, model: str | None = None, *, model_dir: str | None = None, pixel_format: str = "rgb",
                 **options: Any):
        if pixel_format not in ("rgb", "bgr"):
            raise FrigateError(f"pixel_format: expected rgb or bgr (Frigate's input_pixel_format), got {pixel_format!r}")
        self.pixel_format, self.options = pixel_format, options
        self.model_dir = model_dir or _default_model_dir()
        self.fixed = model is not None
        self.model = self._open(model) if model is not None else None
        self.model_name = os.path.basename(model) if model is not None else None
        self.model_types: dict[str, int] = {}

    def _open(self, path: str):
        from ..tasks.dispatch import open_model

        threads = self.options.get("threads")
        opts = {k: v for k, v in self.options.items() if k != "threads" and v is not None}
        m = open_model(path, threads=threads, resize="stretch", **opts)
        if not hasattr(m, "score_threshold") or m.spec.task != "detect":
            raise FrigateError(f"{path}: task {m.spec.task!r}; Frigate needs a detection model")
        return m

    # -- one request ------------------------------------------------------------------------------
    def handle(self, frames: list[bytes]) -> list[bytes]:
        """One request's frames -> the reply's frames (never raises)."""
        try:
            try:
                header = json.loads(bytes(frames[0]).decode("utf-8")) if frames else None
            except (UnicodeDecodeError, ValueError):
                raise FrigateError(f"the header is not JSON ({bytes(frames[0])[:40]!r}...)") from None
            if not isinstance(header, dict):
                raise FrigateError(f"expected a JSON object header, got {type(header).__name__}")
            if header.get("model_request") or header.get("model_data"):
                return [json.dumps(self._manage(header, frames)).encode()]
            if len(frames) != 2:
                raise FrigateError(f"expected 2 frames [header, tensor], got {len(frames)}")
            rows = self.detect_tensor(self.tensor(header, frames[1]))
            mt = str(header.get("model_type", ""))
            self.model_types[mt] = self.model_types.get(mt, 0) + 1
            return [json.dumps({"shape": [ROWS, 6], "dtype": "float32"}).encode(), rows.tobytes()]
        except Exception as exc:  # noqa: BLE001 - a bad request is answered, never kills the server
            why = str(exc) if isinstance(exc, EdgerunError) else f"{type(exc).__name__}: {exc}"
            return [json.dumps({"shape": [ROWS, 6], "dtype": "float32", "error": why}).encode(),
                    np.zeros((ROWS, 6), np.float32).tobytes()]

    @staticmethod
    def tensor(header: dict, data: bytes) -> np.ndarray:
        """The request tensor, checked: (1, H, W, 3) or (1, 3, H, W), uint8 or float32, exact size."""
        shape, dtype = header.get("shape"), header.get("dtype")
        if (not isinstance(shape, list) or len(shape) != 4 or not all(isinstance(v, int) and v > 0 for v in shape)
                or shape[0] != 1 or 3 not in (shape[1], shape[3])):
            raise FrigateError(f"shape {shape}: expected [1, H, W, 3] (nhwc) or [1, 3, H, W] (nchw)")
        if dtype not in ("uint8", "float32"):
            raise FrigateError(f"dtype {dtype!r}: expected uint8 (input_dtype int) or float32 (float, float_denorm)")
        need = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if len(data) != need:
            raise FrigateError(f"tensor of {len(data)} bytes: shape {shape} {dtype} needs {need}")
        return np.frombuffer(data, dtype).reshape(shape)

    def detect_tensor(self, tensor: np.ndarray) -> np.ndarray:
        """(1, H, W, 3) / (1, 3, H, W) uint8 or float32 -> (20, 6) float32 rows."""
        if self.model is None:
            raise FrigateError("no model loaded: start edgerun serve with MODEL.onnx, or let Frigate transfer "
                               "its model (model_request / model_data)")
        img = tensor[0] if tensor.shape[3] == 3 else tensor[0].transpose(1, 2, 0)
        if img.dtype != np.uint8:
            scale = 255.0 if float(img.max(initial=0.0)) <= 1.0 else 1.0  # float (x/255) or float_denorm
            img = np.clip(np.rint(img * scale), 0, 255).astype(np.uint8)
        img = np.ascontiguousarray(img)
        det = self.model.detect(img, pixel_format=self.pixel_format)
        return self.rows(det.xyxy, det.confidence, det.class_id, img.shape[0], img.shape[1])

    @staticmethod
    def rows(xyxy: np.ndarray, score: np.ndarray, class_id: np.ndarray, h: int, w: int) -> np.ndarray:
        """Detections in pixels of an (h, w) input -> Frigate's (20, 6) rows, best score first."""
        out = np.zeros((ROWS, 6), np.float32)
        order = np.argsort(-score, kind="stable")[:ROWS]
        n = len(order)
        b = xyxy[order].astype(np.float32)
        out[:n, 0] = class_id[order]
        out[:n, 1] = score[order]
        out[:n, 2] = np.clip(b[:, 1] / h, 0, 1)
        out[:n, 3] = np.clip(b[:, 0] / w, 0, 1)
        out[:n, 4] = np.clip(b[:, 3] / h, 0, 1)
        out[:n, 5] = np.clip(b[:, 2] / w, 0, 1)
        return out

    # -- model management ------------------------------------------------------------------------
    def _path(self, name: str) -> str:
        if not _NAME.fullmatch(name) or not name.endswith(".onnx"):
            raise FrigateError(f"model name {name!r}: expected a plain file name ending in .onnx")
        return os.path.join(self.model_dir, name)

    def _manage(self, header: dict, frames: list[bytes]) -> dict[str, Any]:
        """A model_request / model_data message -> its one-frame JSON reply (an ``error`` on failure)."""
        name = str(header.get("model_name", ""))
        try:
            if header.get("model_request"):
                return self._model_request(name)
            return self._model_data(name, bytes(frames[1]) if len(frames) > 1 else b"")
        except FrigateError as exc:
            keys = ("model_available", "model_loaded") if header.get("model_request") else ("model_saved", "model_loaded")
            return {**dict.fromkeys(keys, False), "error": str(exc)}

    def _model_request(self, name: str) -> dict[str, Any]:
        if self.model is not None and (self.fixed or name == self.model_name):
            return {"model_available": True, "model_loaded": True}
        path = self._path(name)
        if not os.path.isfile(path):
            return {"model_available": False, "model_loaded": False}
        try:
            self.model, self.model_name = self._open(path), name
            return {"model_available": True, "model_loaded": True}
        except Exception as exc:  # noqa: BLE001 - reported to Frigate, which logs it
            return {"model_available": True, "model_loaded": False, "error": str(exc)}

    def _model_data(self, name: str, data: bytes) -> dict[str, Any]:
        path = self._path(name)
        if not data:
            raise FrigateError(f"model_data for {name}: no file bytes (expected [header, model file])")
        os.makedirs(self.model_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.model_dir, suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        try:
            self.model, self.model_name = self._open(path), name
            return {"model_saved": True, "model_loaded": True}
        except Exception as exc:  # noqa: BLE001
            return {"model_saved": True, "model_loaded": False, "error": str(exc)}


def check_endpoint(endpoint: str) -> None:
    """Refuse an endpoint that is neither ``tcp://`` nor ``ipc://`` into an existing folder."""
    if endpoint.startswith("ipc://"):
        folder = os.path.dirname(endpoint[len("ipc://"):]) or "."
        if not os.path.isdir(folder):
            raise FrigateError(f"--frigate-zmq {endpoint}: folder {folder} does not exist (mkdir -p {folder})")
    elif not endpoint.startswith("tcp://"):
        raise FrigateError(f"--frigate-zmq {endpoint}: expected tcp://HOST:PORT or ipc:///PATH")


class FrigateServer:
    """A ZMQ REP socket bound to ``endpoint`` (``tcp://127.0.0.1:5555``, ``ipc:///tmp/cache/zmq_detector``)
    answering Frigate with ``detector``. ``serve()`` until ``stop()`` (or ``max_requests``)."""

    def __init__(self, detector: FrigateDetector, endpoint: str, max_message_bytes: int = 512 << 20):
        check_endpoint(endpoint)
        zmq = require("zmq", "frigate", "--frigate-zmq", "pyzmq")
        self.detector, self.endpoint = detector, endpoint
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.REP)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, int(max_message_bytes))
        try:
            self._sock.bind(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise FrigateError(f"--frigate-zmq {endpoint}: cannot bind ({exc})") from None
        self._stop = threading.Event()
        self.latencies_ms: list[float] = []
        self.requests = self.errors = 0

    def serve(self, max_requests: int | None = None) -> None:
        """Answer requests until ``stop()`` or ``max_requests`` answered."""
        zmq = require("zmq", "frigate", "--frigate-zmq", "pyzmq")
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        while not self._stop.is_set() and (max_requests is None or self.requests < max_requests):
            if not poller.poll(100):
                continue
            frames = self._sock.recv_multipart(copy=True)
            t0 = time.perf_counter()
            reply = self.detector.handle(frames)
            self._sock.send_multipart(reply)
            self.latencies_ms.append((time.perf_counter() - t0) * 1e3)
            self.requests += 1
            self.errors += len(reply) == 2 and b'"error"' in reply[0][:4096]

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._sock.close(0)
        self._ctx.term()

    def stats(self) -> dict[str, Any]:
        lat = np.array(self.latencies_ms or [np.nan])
        return {"requests": self.requests, "errors": self.errors,
                "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2)}
