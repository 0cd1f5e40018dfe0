"""Which kernels (and signatures) the runtime really uses: run as a child process by the warmup tests.

    python tests/kernel_usage.py tasks    # detect, warmup_tasks(), then every other task
    python tests/kernel_usage.py cache    # every task + the tracker, with numba's cache hits/misses

Prints one JSON object on stdout. A child process starts with no kernel compiled, so a signature
present after a step was compiled (or loaded from the cache) by that step.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import kernel_signatures, kernels, shared_dir  # noqa: E402

# One model per task in ../shared/models, and the task options that pick other kernels.
TASK_MODELS = [
    ("mobilenetv2_224_imagenet_int8.onnx", {}),
    ("yolo11n-pose_640_fp32.onnx", {}),
    ("yolov8n-seg_320_fp32dq.onnx", {"masks": "full"}),
    ("yolov8n-seg_320_fp32dq.onnx", {"masks": "proto"}),
    ("face_detection_yunet_2023mar.onnx", {}),
    ("deeplabv3_mnv2_pascalvoc_257.onnx", {}),
]
# Detection heads (fp32, fp16, yolox) for the detection kernels `edgerun warmup` compiles.
DETECT_MODELS = ["yolov8n_320_int8dyn.onnx", "yolov5n_640_fp16.onnx", "yolox_nano_416.onnx"]


def _run(name: str, image, **options) -> None:
    import cv2

    from edgerun.runtime import open_model
    from edgerun.runtime.tasks.dispatch import annotate

    with open_model(str(shared_dir() / "models" / name), **options) as model:
        result = model.run(image)
        annotate(image.copy(), result, model.spec.names)
        for fmt in ("nv12", "gray"):  # camera formats go through their own preprocessing kernels
            model.run(_convert(image, fmt), pixel_format=fmt)
        side = 3 * max(model.spec.input_size)  # a frame 3x the input: YUV decimation (1080p -> 640 style)
        model.run(_convert(cv2.resize(image, (side, side)), "nv12"), pixel_format="nv12")
        from picamera_buffers import packed, planar  # picamera2 buffers, row padding included

        even = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]
        for fmt in ("RGB888", "XRGB8888", "YUV420"):
            model.run((planar if fmt == "YUV420" else packed)(even, fmt)[0], pixel_format=fmt)


def _convert(bgr, fmt: str):
    import cv2

    h, w = bgr.shape[:2]
    bgr = bgr[: h - h % 2, : w - w % 2]
    if fmt == "gray":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    h2, w2 = bgr.shape[:2]
    y, u, v = i420[:h2], i420[h2:].reshape(-1)[: h2 * w2 // 4], i420[h2:].reshape(-1)[h2 * w2 // 4:]
    uv = np.stack([u, v], 1).reshape(h2 // 2, w2)
    return np.ascontiguousarray(np.concatenate([y, uv]))


def _track(image) -> None:
    from edgerun.runtime import open_model
    from edgerun.runtime.streaming.tracker import ByteTracker

    tracker = ByteTracker()
    with open_model(str(shared_dir() / "models" / DETECT_MODELS[0])) as model:
        det = model.detect(image)
        for _ in range(3):
            tracker.update(det)


def tasks() -> dict:
    """Kernels a Detector uses, then what ``warmup_tasks()`` compiled, then what the tasks used."""
    import cv2

    from edgerun.runtime.tasks.dispatch import warmup_tasks

    image = cv2.imread(str(shared_dir() / "images" / "bus.jpg"))
    _run(DETECT_MODELS[0], image)
    detection = kernel_signatures()
    count = warmup_tasks()
    warmed = kernel_signatures()
    for name, options in TASK_MODELS:
        _run(name, image, **options)
    used = kernel_signatures()
    return {"count": count, **{k: {n: sorted(s) for n, s in v.items()}
                               for k, v in (("detection", detection), ("warmed", warmed), ("used", used))}}


def cache() -> dict:
    """Every kernel the runtime used and, per kernel, the signatures numba loaded from its cache
    (hits) or had to compile because the cache lacked them (misses)."""
    import cv2

    from edgerun.kernels._jit import cache_dir

    image = cv2.imread(str(shared_dir() / "images" / "bus.jpg"))
    for name in DETECT_MODELS:
        _run(name, image)
    for name, options in TASK_MODELS:
        _run(name, image, **options)
    _track(image)
    out = {}
    for name, kernel in kernels().items():
        if kernel._dispatcher is None:
            continue
        stats = kernel._dispatcher.stats
        out[name] = {"hits": sorted(map(str, stats.cache_hits)), "misses": sorted(map(str, stats.cache_misses)),
                     "cache_path": stats.cache_path}
    return {"cache_dir": cache_dir(), "kernels": out}


if __name__ == "__main__":
    print(json.dumps({"tasks": tasks, "cache": cache}[sys.argv[1]]()))
