"""FaceDetector: YuNet (OpenCV Zoo) faces with 5 landmarks, OpenCV ``FaceDetectorYN`` semantics.

Native resolution (default, ``native=True``): YuNet is fully convolutional, so a graph exported at a
fixed 640x640 is reopened with symbolic H/W (``Session.with_symbolic_hw``, after checking the graph
does not depend on its size) and each frame runs at its own size, padded bottom/right with zeros to
the stride (32), BGR 0..255: what ``cv2.FaceDetectorYN`` does after ``setInputSize(w, h)``, and what
OpenCV Zoo's demo does. Frames over ``max_pixels`` are first resized (aspect kept) to fit. With
``native=False`` (or an explicit ``input_size``), or a graph that cannot be made symbolic, the image
is resized keeping its aspect ratio into the model's input, at the top-left, zero padding. Decode as
``kernels.faces.decode_yunet``; NMS class-agnostic (IoU 0.3, score 0.9 by default, top_k 5000 as
OpenCV Zoo's demo). Results: ``Detections`` (class 0 = face) with ``data["landmarks"]`` (N, 5, 2)
float32 source pixels: right eye, left eye, nose tip, right and left mouth corners.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from edgerun.kernels import checks
from edgerun.kernels.boxes import scale_boxes
from edgerun.kernels.faces import decode_yunet, pad_chw
from edgerun.kernels.keypoints import scale_points
from edgerun.kernels.nms import nms
from edgerun.kernels.preprocess import Geometry, letterbox

from ..results import Detections
from ..session import ModelError, Session
from ..spec import YUNET_OUTPUTS, ModelSpec
from .base import Task, frame_size
from .options import DEFAULT_MAX_PIXELS, FaceOptions, ModelOptions

__all__ = ["FaceDetector", "native_plan", "DEFAULT_MAX_PIXELS"]

log = logging.getLogger("edgerun")



def native_plan(height: int, width: int, stride: int = 32, max_pixels: int = DEFAULT_MAX_PIXELS) -> Geometry:
    """The frame at its own size (or resized to at most ``max_pixels``, aspect kept) at the tensor's
    top-left, the tensor rounded up to a multiple of ``stride``."""
    h, w = checks.positive_int("height", height), checks.positive_int("width", width)
    r = min(1.0, math.sqrt(checks.positive_int("max_pixels", max_pixels) / (h * w)))
    nh, nw = (h, w) if r == 1.0 else (max(1, int(h * r)), max(1, int(w * r)))
    dh, dw = -(-nh // stride) * stride, -(-nw // stride) * stride
    return Geometry(h, w, dh, dw, nw / w, nh / h, 0.0, 0.0, nh, nw, 0, 0)


class FaceDetector(Task):
    """YuNet face detector. Thread-safe like Detector.

    ``FaceDetector.from_path(path, score_threshold=0.9, iou_threshold=0.3, max_detections=300,
    max_candidates=5000, native=None, max_pixels=..., threads=None, **spec_overrides)`` (``FaceOptions``).
    """

    Options = FaceOptions
    TASK = "face"

    def __init__(self, session: Session, spec: ModelSpec, options: FaceOptions | None = None):
        if spec.head != "yunet":
            raise ModelError(f"{session.path}: head {spec.head!r} is not a YuNet face head")
        names = [o.name for o in session.outputs]
        if len(names) != 12:
            raise ModelError(f"{session.path}: YuNet has 12 outputs (cls/obj/bbox/kps x 3 strides), got "
                             f"{len(names)}: {names}")
        order = ([names.index(n) for n in YUNET_OUTPUTS] if set(YUNET_OUTPUTS) <= set(names)
                 else list(range(12)))  # else assume the file's order: cls, obj, bbox, kps
        super().__init__(session, spec, options)
        o = self.options
        self._order = order
        self.score_threshold, self.iou_threshold = o.score_threshold, o.iou_threshold
        self.max_detections, self.max_candidates = o.max_detections, o.max_candidates
        self.class_agnostic = True
        self.max_pixels = o.max_pixels
        self.native = o.native is not False and self._open_native()

    @classmethod
    def fit_options(cls, options: dict[str, Any], model: ModelOptions, strict: bool = True) -> dict[str, Any]:
        """``native`` defaults to True unless ``input_size`` is given (then the model runs there)."""
        options = super().fit_options(options, model, strict)
        if options.get("native") is None:
            options["native"] = "input_size" not in model.overrides
        return options

    def detect(self, image: np.ndarray, pixel_format: str = "bgr") -> Detections:
        """Faces of one frame (``run``)."""
        return self.run(image, pixel_format)

    def _open_native(self) -> bool:
        """Switch to native resolution: symbolic H/W (reopening a fixed-size graph); False if impossible."""
        s = self.spec
        if s.layout != "nchw" or s.input_dtype != "float32":
            log.warning("edgerun: %s: native resolution needs an NCHW float32 input; running at %s",
                        self.session.path, s.input_size)
            return False
        if not s.dynamic_hw:
            try:
                self.session = self.session.with_symbolic_hw()
            except ModelError as exc:
                log.warning("edgerun: %s; running at the fixed %s", exc, s.input_size)
                return False
            self.spec = s.replace(dynamic_hw=True)
        return True

    def plan(self, height: int, width: int) -> Geometry:
        """Where an image of this size lands in the model input (native: its own size, padded)."""
        if not self.native:
            return super().plan(height, width)
        return native_plan(height, width, self.spec.stride, self.max_pixels)

    def preprocess(self, image: np.ndarray, pixel_format: str = "bgr", out: np.ndarray | None = None,
                   geometry: Geometry | None = None) -> tuple[np.ndarray, Geometry]:
        """Image -> (1, 3, H', W') tensor; native: the frame as is (or capped), zero-padded bottom/right."""
        if not self.native:
            return super().preprocess(image, pixel_format, out, geometry)
        geo = self.plan(*frame_size(image, pixel_format)) if geometry is None else geometry
        if out is None:
            out = self._buffer(self.tensor_shape(1, geo))
        s = self.spec
        norm = dict(channel_order=s.channel_order, scale=s.scale, mean=s.mean, std=s.std)
        if pixel_format in ("bgr", "rgb") and image.ndim == 3 and (geo.new_h, geo.new_w) == image.shape[:2]:
            pad_chw(image, out[0], source_order=pixel_format, pad_value=s.pad_value, **norm)
            return out, geo
        small, _ = letterbox(image, (geo.new_h, geo.new_w), pixel_format=pixel_format, mode="stretch", **norm)
        pad = np.array([(s.pad_value * s.scale - m) / d for m, d in zip(s.mean, s.std)], np.float32)
        out[0] = pad[:, None, None]
        out[0, :, :geo.new_h, :geo.new_w] = small
        return out, geo

    def postprocess(self, outputs: list[np.ndarray], geometry: Geometry, batch_index: int = 0
                    ) -> Detections:
        """Raw YuNet outputs -> faces with landmarks in source pixels."""
        o = [outputs[i][batch_index:batch_index + 1] for i in self._order]
        cand = decode_yunet(o[0:3], o[3:6], o[6:9], o[9:12], input_hw=(geometry.dst_h, geometry.dst_w),
                            strides=self.spec.strides, score_threshold=self.score_threshold,
                            max_candidates=self.max_candidates)
        keep = nms(cand.xyxy, cand.scores, None, iou_threshold=self.iou_threshold,
                   max_detections=self.max_detections)
        xyxy = scale_boxes(np.ascontiguousarray(cand.xyxy[keep]), geometry)
        landmarks = scale_points(np.ascontiguousarray(cand.landmarks[keep]), geometry)
        return Detections(xyxy, cand.scores[keep], np.zeros(len(keep), np.int64),
                          image_shape=(geometry.src_h, geometry.src_w), data={"landmarks": landmarks})

    def __repr__(self) -> str:
        size = f"native<={self.max_pixels}px" if self.native else str(self.spec.input_size)
        return f"FaceDetector(input={size}, score>{self.score_threshold}, iou>{self.iou_threshold})"

