"""Peers measured side by side with edgerun in one run (``edgerun benchmark --compare ...``).

- ``BaselinePipeline``: the same model and inputs through the plain pipeline most projects write:
  cv2.cvtColor (camera formats), cv2.resize + cv2.copyMakeBorder, numpy normalise/transpose,
  a plain ``InferenceSession.run``, numpy decode and ``cv2.dnn.NMSBoxesBatched``.
- ``UltralyticsPipeline``: Ultralytics' own predictor on the same ONNX file (stage times from its
  ``Results.speed``), only when ``ultralytics`` is installed.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from edgerun.kernels.errors import EdgerunError

from ..session import spin_config

from . import Recorder

__all__ = ["BaselinePipeline", "UltralyticsPipeline", "PeerUnavailable", "make_peer"]


class PeerUnavailable(EdgerunError, RuntimeError):
    """A requested peer cannot run here (not installed, or the model/format is outside its scope)."""


_TO_BGR = {"rgb": "COLOR_RGB2BGR", "gray": "COLOR_GRAY2BGR", "nv12": "COLOR_YUV2BGR_NV12",
           "nv21": "COLOR_YUV2BGR_NV21", "i420": "COLOR_YUV2BGR_I420", "yuyv": "COLOR_YUV2BGR_YUYV"}


def make_peer(kind: str, detector, pixel_format: str, imgsz: tuple[int, int] | None = None):
    """The peer pipeline named ``kind`` ("baseline" or "ultralytics") for this detector."""
    if kind == "baseline":
        return BaselinePipeline(detector, pixel_format)
    if kind == "ultralytics":
        return UltralyticsPipeline(detector, pixel_format, imgsz)
    raise PeerUnavailable(f"--compare: expected 'baseline' or 'ultralytics', got {kind!r}")


class BaselinePipeline:
    """A plain numpy + OpenCV detector pipeline with its own ORT session (same threads/spin)."""

    name = "baseline"

    def __init__(self, detector, pixel_format: str = "bgr"):
        import onnxruntime as ort

        spec = detector.spec
        if detector.resize_mode not in ("letterbox", "rect", "stretch"):
            raise PeerUnavailable(f"baseline: resize mode {detector.resize_mode!r} is not implemented")
        self.det, self.spec, self.fmt = detector, spec, pixel_format
        sess = detector.session
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = sess.threads
        opts.inter_op_num_threads = 1
        for key, value in spin_config(sess.spin_active).items():
            opts.add_session_config_entry(key, value)
        opts.log_severity_level = 3
        self.sess = ort.InferenceSession(sess.path, opts, providers=["CPUExecutionProvider"])
        self.input = spec.input_name
        self._grid: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def run(self, image: np.ndarray, rec: Recorder) -> Any:
        x, geo = self.preprocess(image)
        rec.clock("preprocess")
        out = self.sess.run(None, {self.input: x})
        rec.clock("inference")
        result = self.postprocess(out[0], geo)
        rec.clock("postprocess")
        return result

    def preprocess(self, image: np.ndarray):
        import cv2

        s = self.spec
        bgr = image if self.fmt == "bgr" else cv2.cvtColor(image, getattr(cv2, _TO_BGR[self.fmt]))
        geo = self.det.plan(*bgr.shape[:2])  # plain Python arithmetic, no kernel
        img = bgr
        if (geo.new_w, geo.new_h) != (bgr.shape[1], bgr.shape[0]):
            img = cv2.resize(bgr, (geo.new_w, geo.new_h), interpolation=cv2.INTER_LINEAR)
        bottom, right = geo.dst_h - geo.new_h - geo.top, geo.dst_w - geo.new_w - geo.left
        if geo.top or geo.left or bottom or right:
            img = cv2.copyMakeBorder(img, geo.top, bottom, geo.left, right, cv2.BORDER_CONSTANT,
                                     value=(s.pad_value,) * 3)
        if s.channel_order == "rgb":
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        x = img.astype(np.float32) * np.float32(s.scale)
        if s.mean != (0.0, 0.0, 0.0) or s.std != (1.0, 1.0, 1.0):
            x = (x - np.asarray(s.mean, np.float32)) / np.asarray(s.std, np.float32)
        x = x.transpose(2, 0, 1)[None] if s.layout == "nchw" else x[None]
        x = np.ascontiguousarray(x, np.float16 if s.input_dtype == "float16" else np.float32)
        return x, geo

    def postprocess(self, raw: np.ndarray, geo) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import cv2

        xywh, conf, cls = self._decode(raw[0].astype(np.float32), (geo.dst_h, geo.dst_w))
        det = self.det
        order = np.argsort(-conf, kind="stable")[:det.max_candidates]
        xywh, conf, cls = xywh[order], conf[order], cls[order]
        if self.spec.head == "end2end":
            idx = np.arange(min(len(conf), det.max_detections))
        elif det.class_agnostic:
            idx = cv2.dnn.NMSBoxes(xywh, conf, det.score_threshold, det.iou_threshold)
        else:
            idx = cv2.dnn.NMSBoxesBatched(xywh, conf, cls, det.score_threshold, det.iou_threshold)
        idx = np.asarray(idx, np.int64).reshape(-1)
        idx = idx[np.argsort(-conf[idx], kind="stable")][:det.max_detections]
        xy = xywh[idx, :2]
        xyxy = np.concatenate([xy, xy + xywh[idx, 2:]], axis=1)
        xyxy = (xyxy - [geo.pad_x, geo.pad_y, geo.pad_x, geo.pad_y]) / [geo.scale_x, geo.scale_y, geo.scale_x, geo.scale_y]
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, geo.src_w)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, geo.src_h)
        return xyxy.astype(np.float32), conf[idx], cls[idx]

    def _decode(self, o: np.ndarray, hw: tuple[int, int]):
        """Head rows -> (x, y, w, h) top-left boxes, scores, classes above the threshold."""
        s, thr = self.spec, self.det.score_threshold
        if s.head == "end2end":
            keep = o[:, 4] > thr
            b = o[keep]
            return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1), \
                b[:, 4], b[:, 5].astype(np.int32)
        if s.head == "yolov8":
            o = o[:4 + s.num_classes].T
            scores = o[:, 4:]
        else:
            if s.head == "yolox":
                o = self._yolox_grid(o, hw)
            o = o[o[:, 4] > thr]
            scores = o[:, 5:] * o[:, 4:5]
        cls = scores.argmax(1).astype(np.int32)
        conf = scores[np.arange(len(cls)), cls]
        keep = conf > thr
        b, conf, cls = o[keep, :4], conf[keep], cls[keep]
        return np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 2], b[:, 3]], 1), conf, cls

    def _yolox_grid(self, o: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        if hw not in self._grid:
            grids, strides = [], []
            for st in self.spec.strides:
                gy, gx = np.mgrid[0:hw[0] // st, 0:hw[1] // st]
                grids.append(np.stack([gx.ravel(), gy.ravel()], 1))
                strides.append(np.full((gx.size, 1), st))
            self._grid[hw] = (np.concatenate(grids).astype(np.float32),
                              np.concatenate(strides).astype(np.float32))
        grid, st = self._grid[hw]
        o = o.copy()
        o[:, :2] = (o[:, :2] + grid) * st
        o[:, 2:4] = np.exp(o[:, 2:4]) * st
        o[:, :2] += o[:, 2:4] / 2  # to centre form, like the other heads
        return o


class UltralyticsPipeline:
    """Ultralytics' predictor on the same ONNX file; stages from ``Results.speed``."""

    name = "ultralytics"

    def __init__(self, detector, pixel_format: str = "bgr", imgsz: tuple[int, int] | None = None):
        try:
            from ultralytics import YOLO
        except ImportError:
            raise PeerUnavailable("--compare ultralytics: the 'ultralytics' package is not installed "
                                  "(pip install ultralytics), or use --compare baseline") from None
        if pixel_format != "bgr":
            raise PeerUnavailable(f"--compare ultralytics takes BGR frames only, not {pixel_format!r}")
        self.det = detector
        self.imgsz = list(imgsz or detector.spec.input_size)
        self.model = YOLO(detector.session.path, task="detect")

    def run(self, image: np.ndarray, rec: Recorder) -> Any:
        d = self.det
        r = self.model.predict(image, imgsz=self.imgsz, conf=d.score_threshold, iou=d.iou_threshold,
                               max_det=d.max_detections, verbose=False)[0]
        for stage in ("preprocess", "inference", "postprocess"):
            rec.set(stage, float(r.speed.get(stage, float("nan"))))
        return r
