"""``edgerun serve --frigate-zmq``: a client that builds the exact messages Frigate's ``zmq`` detector
plugin sends (frigate/detectors/plugins/zmq_ipc.py: REQ socket, multipart [JSON header with shape,
dtype name and model_type enum name, the tensor's C-order bytes]; the model_request/model_data
handshake) from Frigate's own input path (a square region of a real photo, RGB, cv2.resize
INTER_LINEAR to the model size, expand_dims, transpose (0, 3, 1, 2) for nchw, /255 for float),
against a real YOLOv8n. The replies must equal edgerun's detect() on the same square image,
normalised; bad requests get an error without killing the server; p50/p99 per request printed."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from conftest import shared_file

from edgerun.runtime.cli import main

zmq = pytest.importorskip("zmq", reason="pyzmq is not installed (pip install 'edgerun[frigate]')")

from edgerun.runtime.integrations.frigate import FrigateDetector, FrigateServer  # noqa: E402

MODEL = ("models", "yolov8n_320_int8dyn.onnx")
SIZE = 320


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FrigateClient:
    """Frigate's side of the protocol: one REQ socket, its header and payload byte layout."""

    def __init__(self, endpoint: str, timeout_ms: int = 60000):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.REQ)
        self.sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
        self.sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    def detect_raw(self, tensor: np.ndarray, model_type: str = "yologeneric") -> tuple[dict, np.ndarray]:
        header = json.dumps({"shape": list(tensor.shape), "dtype": str(tensor.dtype.name),
                             "model_type": model_type}).encode("utf-8")
        return self.raw([header, memoryview(tensor.tobytes(order="C"))])

    def raw(self, frames) -> tuple[dict, np.ndarray]:
        self.sock.send_multipart(frames)
        reply = self.sock.recv_multipart()
        assert len(reply) == 2, reply  # edgerun answers [header, tensor]; Frigate reshapes by the header
        header = json.loads(reply[0])
        rows = np.frombuffer(reply[1], dtype=np.dtype(header["dtype"])).reshape(header["shape"])
        return header, rows

    def manage(self, header: dict, *extra: bytes) -> dict:
        self.sock.send_multipart([json.dumps(header).encode("utf-8"), *extra])
        reply = self.sock.recv_multipart()
        assert len(reply) == 1  # Frigate expects one JSON frame here
        return json.loads(reply[0])

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def frigate_tensor(rgb_region: np.ndarray, layout: str, input_dtype: str) -> np.ndarray:
    """Frigate's create_tensor_input + _transform_input for a square RGB region."""
    t = cv2.resize(rgb_region, dsize=(SIZE, SIZE), interpolation=cv2.INTER_LINEAR)[None]
    if layout == "nchw":
        t = np.transpose(t, (0, 3, 1, 2))
    if input_dtype == "float":
        t = t.astype(np.float32)
        t /= 255
    elif input_dtype == "float_denorm":
        t = t.astype(np.float32)
    return t


def regions() -> dict[str, np.ndarray]:
    """Square regions of real photos (RGB), as Frigate crops around motion."""
    bus = cv2.imread(str(shared_file("images", "bus.jpg")))[:, :, ::-1]       # 810x1080
    zidane = cv2.imread(str(shared_file("images", "zidane.jpg")))[:, :, ::-1]  # 1280x720
    return {"bus_top": bus[:810, :810], "bus_bottom": bus[270:, :], "zidane_mid": zidane[:, 280:1000],
            "bus_small": bus[500:820, 0:320]}


def expected_rows(detector, rgb_square: np.ndarray) -> np.ndarray:
    """edgerun's detect() (default letterbox model: the identity on a model-sized square) -> rows."""
    det = detector.detect(np.ascontiguousarray(rgb_square), pixel_format="rgb")
    out = np.zeros((20, 6), np.float32)
    order = np.argsort(-det.confidence, kind="stable")[:20]
    h, w = rgb_square.shape[:2]
    for i, k in enumerate(order):
        x1, y1, x2, y2 = det.xyxy[k]
        out[i] = [det.class_id[k], det.confidence[k], y1 / h, x1 / w, y2 / h, x2 / w]
    return np.clip(out, 0, None)


@pytest.fixture(scope="module")
def server():
    det = FrigateDetector(str(shared_file(*MODEL)))
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    srv = FrigateServer(det, endpoint)
    t = threading.Thread(target=srv.serve, daemon=True)
    t.start()
    yield srv
    srv.stop()
    t.join(5)
    srv.close()


@pytest.fixture(scope="module")
def reference():
    from edgerun.runtime.tasks.dispatch import open_model
    return open_model(str(shared_file(*MODEL)))  # letterbox, the default: no stretch involved


@pytest.mark.parametrize("layout,input_dtype", [("nhwc", "int"), ("nchw", "int"), ("nchw", "float"),
                                                ("nhwc", "float_denorm")])
def test_replies_equal_detect_on_the_same_square(server, reference, layout, input_dtype):
    client = FrigateClient(server.endpoint)
    try:
        assert client.manage({"model_request": True, "model_name": "yolo.onnx"}) == \
            {"model_available": True, "model_loaded": True}
        for name, region in regions().items():
            tensor = frigate_tensor(region, layout, input_dtype)
            header, rows = client.detect_raw(tensor)
            assert header == {"shape": [20, 6], "dtype": "float32"} and rows.dtype == np.float32
            square = cv2.resize(region, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
            want = expected_rows(reference, square)
            n = int((want[:, 1] > 0).sum())
            assert n >= 1, name
            np.testing.assert_array_equal(rows[:, 0], want[:, 0], err_msg=name)
            np.testing.assert_allclose(rows[:, 1:], want[:, 1:], atol=1e-5, err_msg=name)
            assert np.all(np.diff(rows[:n, 1]) <= 0) and not rows[n:].any()  # sorted, zero rows after
            assert rows[:n, 2:].min() >= 0 and rows[:n, 2:].max() <= 1
    finally:
        client.close()


def test_bad_requests_are_answered_and_the_server_lives_on(server):
    client = FrigateClient(server.endpoint)
    good = frigate_tensor(regions()["bus_top"], "nhwc", "int")
    bad = [
        ([json.dumps({"shape": [1, SIZE, SIZE, 4], "dtype": "uint8"}).encode(), bytes(SIZE * SIZE * 4)], "shape"),
        ([json.dumps({"shape": [1, SIZE, SIZE, 3], "dtype": "float64"}).encode(), bytes(SIZE * SIZE * 24)], "dtype"),
        ([json.dumps({"shape": [1, SIZE, SIZE, 3], "dtype": "uint8"}).encode(), bytes(100)], "needs 307200"),
        ([b"\x00garbage{", good.tobytes()], "not JSON"),
        ([b"[1, 2]", good.tobytes()], "JSON object"),
        ([json.dumps({"shape": [1, SIZE, SIZE, 3], "dtype": "uint8"}).encode()], "expected 2 frames"),
    ]
    try:
        for frames, why in bad:
            header, rows = client.raw(frames)
            assert why in header["error"] and not rows.any() and rows.shape == (20, 6), header
            header, rows = client.detect_raw(good)  # still serving, same answers
            assert "error" not in header and rows[0, 1] > 0.5
        assert client.manage({"model_data": True, "model_name": "../evil.onnx"}, b"x")["model_saved"] is False
    finally:
        client.close()


def test_model_request_and_transfer_handshake(tmp_path):
    model = shared_file(*MODEL)
    det = FrigateDetector(model_dir=str(tmp_path / "models"))
    endpoint = f"ipc://{tmp_path}/zmq_detector"
    srv = FrigateServer(det, endpoint)
    t = threading.Thread(target=srv.serve, daemon=True)
    t.start()
    client = FrigateClient(endpoint)
    try:
        tensor = frigate_tensor(regions()["bus_top"], "nchw", "float")
        assert "no model loaded" in client.detect_raw(tensor)[0]["error"]
        assert client.manage({"model_request": True, "model_name": "yolo.onnx"}) == \
            {"model_available": False, "model_loaded": False}
        hostile = client.manage({"model_data": True, "model_name": "broken.onnx"}, b"not an onnx file")
        assert hostile["model_saved"] is True and hostile["model_loaded"] is False and hostile["error"]
        assert client.manage({"model_data": True, "model_name": "yolo.onnx"}, model.read_bytes()) == \
            {"model_saved": True, "model_loaded": True}
        assert (tmp_path / "models" / "yolo.onnx").read_bytes() == model.read_bytes()
        assert client.manage({"model_request": True, "model_name": "yolo.onnx"}) == \
            {"model_available": True, "model_loaded": True}
        header, rows = client.detect_raw(tensor)
        assert "error" not in header and rows[0, 1] > 0.5
    finally:
        client.close()
        srv.stop()
        t.join(5)
        srv.close()


def test_latency_p50_p99(server):
    client = FrigateClient(server.endpoint)
    tensor = frigate_tensor(regions()["bus_top"], "nhwc", "int")
    try:
        client.detect_raw(tensor)
        times = []
        for _ in range(100):
            t0 = time.perf_counter()
            client.detect_raw(tensor)
            times.append((time.perf_counter() - t0) * 1e3)
    finally:
        client.close()
    p50, p99 = np.percentile(times, [50, 99])
    print(f"Frigate zmq round trip, {SIZE}x{SIZE} uint8 nhwc, 100 requests: p50 {p50:.2f} ms, p99 {p99:.2f} ms "
          f"(load {os.getloadavg()[0]:.2f})")
    assert p50 < 1000


def test_cli_serves_and_refuses_bad_endpoints(server, capsys, tmp_path):
    model = str(shared_file(*MODEL))
    assert main(["serve", model, "--frigate-zmq", "http://127.0.0.1:1"]) == 2
    assert main(["serve", model, "--frigate-zmq", server.endpoint]) == 2  # the fixture holds the port
    assert main(["serve", model, "--frigate-zmq", f"ipc://{tmp_path}/no/such/dir/sock"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("edgerun: error:")]
    assert len(err) == 3 and "expected tcp://HOST:PORT" in err[0] and "cannot bind" in err[1] \
        and "does not exist" in err[2], err
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "edgerun.runtime.cli", "serve", model, "--frigate-zmq", endpoint,
                             "--max-requests", "3"], stderr=subprocess.PIPE, text=True)
    client = FrigateClient(endpoint)
    try:
        tensor = frigate_tensor(regions()["zidane_mid"], "nhwc", "int")
        assert client.manage({"model_request": True, "model_name": "yolov8n.onnx"})["model_loaded"] is True
        for _ in range(2):
            assert client.detect_raw(tensor)[1][0, 1] > 0.5
        assert proc.wait(60) == 0
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
    assert "3 request(s) answered, 0 error(s)" in proc.stderr.read()
