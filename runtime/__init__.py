"""edgerun.runtime: the public API.

    from edgerun.runtime import Detector
    det = Detector.from_path("yolov8n.onnx")
    d = det.detect(bgr_image)   # d.xyxy, d.confidence, d.class_id, d.timings
    m = open_model("any.onnx")  # Detector / PoseDetector / Segmenter / Classifier from the spec
"""
from edgerun.kernels.errors import EdgerunError, EdgerunTypeError, EdgerunValueError

from .classifier import Classifier
from .detector import Detector
from .face import FaceDetector
from .pose import PoseDetector
from .results import Classifications, Detections, SemanticMask
from .segmenter import Segmenter
from .semantic import SemanticSegmenter
from .session import ModelError, Session, cpu_budget
from .spec import ModelSpec, resolve_spec
from .tasks import open_model
from . import stream  # a callable module: stream(model, source, ...) iterates StreamResults
from .stream import StreamResult, StreamRunner
from .tracker import ByteTracker

__all__ = ["open_model", "Detector", "PoseDetector", "Segmenter", "Classifier", "FaceDetector",
           "SemanticSegmenter", "Detections", "Classifications", "SemanticMask", "ModelSpec", "Session", "ModelError", "EdgerunError",
           "EdgerunTypeError", "EdgerunValueError", "cpu_budget", "resolve_spec",
           "stream", "StreamRunner", "StreamResult", "ByteTracker"]
