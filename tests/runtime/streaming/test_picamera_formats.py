"""picamera2 buffers (RGB888, XRGB8888, YUV420, ... with row padding, as MappedArray maps them)
straight into ``detect()`` and ``StreamRunner.submit``: the same detections as the BGR picture they
hold (for YUV: OpenCV's cvtColor of the same bytes), on a real YOLOv8n and a real photo."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import shared_file
from picamera_buffers import packed, planar

from edgerun.runtime import open_model
from edgerun.runtime.streaming.runner import StreamRunner

FORMATS = ("RGB888", "BGR888", "XRGB8888", "XBGR8888", "YUV420", "YVU420")


@pytest.fixture(scope="module")
def model():
    return open_model(str(shared_file("models", "yolov8n_320_int8dyn.onnx")))


@pytest.fixture(scope="module")
def buffers():
    """Per format: (picamera2 buffer, the BGR picture in it) from bus.jpg at a Pi lores size."""
    bgr = cv2.resize(cv2.imread(str(shared_file("images", "bus.jpg"))), (480, 640))
    return {f: planar(bgr, f) if f.endswith("420") else packed(bgr, f) for f in FORMATS}


def same(a, b) -> bool:
    return (np.array_equal(a.xyxy, b.xyxy) and np.array_equal(a.class_id, b.class_id)
            and np.array_equal(a.confidence, b.confidence))


@pytest.mark.parametrize("fmt", FORMATS)
def test_detect_takes_picamera_buffers(model, buffers, fmt):
    array, bgr = buffers[fmt]
    got, want = model.detect(array, pixel_format=fmt), model.detect(bgr)
    assert len(want) >= 3 and same(got, want), (fmt, len(got), len(want))
    assert got.image_shape == (640, 480)


def test_stream_runner_submit_takes_picamera_buffers(model, buffers):
    with StreamRunner(model, mode="every_frame") as runner:
        for fmt in FORMATS:
            runner.submit(buffers[fmt][0], pixel_format=fmt, copy=False)
        runner.stop(drain=True)
        results = list(runner.results(timeout=60))
    assert [r.index for r in results] == list(range(len(FORMATS))) and all(r.ok for r in results)
    for fmt, r in zip(FORMATS, results):
        assert same(r.detections, model.detect(buffers[fmt][1])), fmt
