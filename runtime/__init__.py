"""edgerun.runtime: the public API.

    from edgerun.runtime import Detector
    det = Detector.from_path("yolov8n.onnx")
    d = det.detect(bgr_image)   # d.xyxy, d.confidence, d.class_id, d.timings
    m = open_model("any.onnx")  # Detector / PoseDetector / Segmenter / Classifier from the spec
    det = Detector.open("yolov8n.onnx", DetectorOptions(score_threshold=0.4), ModelOptions(threads=2))
    for r in stream("model.onnx", "clip.mp4"): ...

Names are imported on first use (PEP 562), so ``import edgerun.runtime`` stays cheap and a script
that only needs ``Detector`` never loads the stream, tracker or task modules.
"""
from __future__ import annotations

import importlib
from typing import Any

from edgerun.kernels.errors import EdgerunError, EdgerunTypeError, EdgerunValueError

_WHERE = {
    "open_model": "tasks.dispatch", "Detector": "tasks.detector", "PoseDetector": "tasks.pose",
    "Segmenter": "tasks.segmenter", "Classifier": "tasks.classifier", "FaceDetector": "tasks.face",
    "SemanticSegmenter": "tasks.semantic", "ObbDetector": "tasks.obb", "DepthEstimator": "tasks.depth",
    "Detections": "results", "Classifications": "results", "SemanticMask": "results", "DepthMap": "results",
    "ModelSpec": "spec", "resolve_spec": "spec", "Session": "session", "ModelError": "session",
    "cpu_budget": "session", "stream": "streaming.runner", "StreamRunner": "streaming.runner",
    "StreamResult": "streaming.runner", "ByteTracker": "streaming.tracker",
    **{name: "tasks.options" for name in ("ModelOptions", "DetectorOptions", "SegmenterOptions", "PoseOptions", "ObbOptions",
                                          "FaceOptions", "ClassifierOptions", "SemanticOptions", "DepthOptions")},
}

__all__ = [*_WHERE, "EdgerunError", "EdgerunTypeError", "EdgerunValueError"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edgerun.runtime' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
