"""MTCNN (PNet/RNet/ONet) as torch modules for export, and a small ONNX Runtime cascade to run them.

The modules match facenet-pytorch's state_dict keys (``conv1``, ``prelu1``, ..., ``dense6_3``).
The dense layers were trained in Caffe on a channels-last map flattened as (N, W, H, C), hence the
``permute(0, 3, 2, 1)`` before ``flatten`` (the (N, H, W, C) order also runs but misses faces).
torch is imported inside the factories only; the cascade (``detect_faces``) needs numpy/cv2/ORT.
Outputs: PNet ``prob`` (N, 2, h, w) + ``reg`` (N, 4, h, w); RNet ``prob`` (N, 2) + ``reg`` (N, 4);
ONet adds ``landmarks`` (N, 10). Input: RGB, ``(pixel - 127.5) * 0.0078125``, NCHW.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = ["make_pnet", "make_rnet", "make_onet", "detect_faces", "SCALE", "MEAN"]

SCALE = 0.0078125
MEAN = 127.5 * SCALE  # ModelSpec: tensor = pixel * SCALE - MEAN


def _modules(flatten_order: tuple[int, int, int, int]) -> dict[str, Any]:
    import torch
    from torch import nn

    def conv(cin: int, cout: int, k: int, i: int) -> list[tuple[str, nn.Module]]:
        return [(f"conv{i}", nn.Conv2d(cin, cout, k)), (f"prelu{i}", nn.PReLU(cout))]

    class PNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for name, m in conv(3, 10, 3, 1) + [("pool1", nn.MaxPool2d(2, 2, ceil_mode=True))] \
                    + conv(10, 16, 3, 2) + conv(16, 32, 3, 3):
                self.add_module(name, m)
            self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
            return torch.softmax(self.conv4_1(x), dim=1), self.conv4_2(x)

    class RNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for name, m in conv(3, 28, 3, 1) + [("pool1", nn.MaxPool2d(3, 2, ceil_mode=True))] \
                    + conv(28, 48, 3, 2) + [("pool2", nn.MaxPool2d(3, 2, ceil_mode=True))] + conv(48, 64, 2, 3):
                self.add_module(name, m)
            self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
            self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.prelu3(self.conv3(x)).permute(*flatten_order).flatten(1)
            x = self.prelu4(self.dense4(x))
            return torch.softmax(self.dense5_1(x), dim=1), self.dense5_2(x)

    class ONet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for name, m in conv(3, 32, 3, 1) + [("pool1", nn.MaxPool2d(3, 2, ceil_mode=True))] \
                    + conv(32, 64, 3, 2) + [("pool2", nn.MaxPool2d(3, 2, ceil_mode=True))] \
                    + conv(64, 64, 3, 3) + [("pool3", nn.MaxPool2d(2, 2, ceil_mode=True))] + conv(64, 128, 2, 4):
                self.add_module(name, m)
            self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
            self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.pool3(self.prelu3(self.conv3(x)))
            x = self.prelu4(self.conv4(x)).permute(*flatten_order).flatten(1)
            x = self.prelu5(self.dense5(x))
            return torch.softmax(self.dense6_1(x), dim=1), self.dense6_2(x), self.dense6_3(x)

    return {"pnet": PNet, "rnet": RNet, "onet": ONet}


CAFFE_ORDER = (0, 3, 2, 1)  # (N, W, H, C): what the trained weights expect


def _make(name: str, weights: str | None, flatten_order: tuple[int, int, int, int]):
    net = _modules(flatten_order)[name]()
    if weights is not None:
        import torch
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net.eval()


def make_pnet(weights: str | None = None):
    return _make("pnet", weights, CAFFE_ORDER)


def make_rnet(weights: str | None = None, flatten_order: tuple[int, int, int, int] = CAFFE_ORDER):
    return _make("rnet", weights, flatten_order)


def make_onet(weights: str | None = None, flatten_order: tuple[int, int, int, int] = CAFFE_ORDER):
    return _make("onet", weights, flatten_order)


# ----- cascade (numpy glue around three ONNX sessions) -----

Run = Callable[[np.ndarray], list[np.ndarray]]


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    from edgerun.kernels.nms import nms
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    return nms(np.ascontiguousarray(boxes, np.float32), np.ascontiguousarray(scores, np.float32),
               iou_threshold=iou, max_detections=len(boxes), class_agnostic=True)


def _square(b: np.ndarray) -> np.ndarray:
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    side = np.maximum(w, h)
    x1, y1 = b[:, 0] + w / 2 - side / 2, b[:, 1] + h / 2 - side / 2
    return np.stack([x1, y1, x1 + side, y1 + side], 1)


def _regress(b: np.ndarray, reg: np.ndarray) -> np.ndarray:
    wh = np.concatenate([b[:, 2:4] - b[:, 0:2]] * 2, 1)
    return b[:, :4] + reg * wh


def _crops(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    import cv2
    h, w = image.shape[:2]
    out = np.zeros((len(boxes), 3, size, size), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(np.round(boxes).astype(int)):
        patch = np.zeros((max(y2 - y1, 1), max(x2 - x1, 1), 3), np.float32)
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if sx2 > sx1 and sy2 > sy1:
            patch[sy1 - y1:sy2 - y1, sx1 - x1:sx2 - x1] = image[sy1:sy2, sx1:sx2]
        out[i] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
    return out


def detect_faces(rgb: np.ndarray, pnet: Run, rnet: Run, onet: Run, *, min_size: int = 20,
                 factor: float = 0.709, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Faces in an RGB uint8 image: (K, 4) xyxy float32 and (K,) scores. ``pnet``/``rnet``/``onet``
    map an NCHW float32 batch to the nets' outputs (e.g. ``lambda x: session.run({"input": x})``)."""
    import cv2
    img = (rgb.astype(np.float32) - 127.5) * SCALE
    h, w = img.shape[:2]
    m = 12.0 / min_size
    scale, boxes, scores, regs = m, [], [], []
    while min(h, w) * scale >= 12:  # stage 1: PNet on an image pyramid
        hs, ws = int(np.ceil(h * scale)), int(np.ceil(w * scale))
        x = cv2.resize(img, (ws, hs), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)[None]
        prob, reg = pnet(np.ascontiguousarray(x))[:2]
        ys, xs = np.nonzero(prob[0, 1] >= thresholds[0])
        if len(ys):
            q1 = np.floor((2 * np.stack([xs, ys], 1) + 1) / scale)
            q2 = np.floor((2 * np.stack([xs, ys], 1) + 12) / scale)
            b, s, r = np.concatenate([q1, q2], 1), prob[0, 1, ys, xs], reg[0][:, ys, xs].T
            keep = _nms(b, s, 0.5)
            boxes.append(b[keep]), scores.append(s[keep]), regs.append(r[keep])
        scale *= factor
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    b, s, r = np.concatenate(boxes), np.concatenate(scores), np.concatenate(regs)
    keep = _nms(b, s, 0.7)
    b = _square(_regress(b[keep], r[keep]))
    for stage, (net, size) in enumerate(((rnet, 24), (onet, 48)), start=1):  # stages 2 and 3
        if not len(b):
            break
        prob, reg = net(_crops(img, b, size))[:2]
        ok = prob[:, 1] > thresholds[stage]
        b, s, reg = b[ok], prob[ok, 1], reg[ok]
        if stage == 1:
            keep = _nms(b, s, 0.7)
            b = _square(_regress(b[keep], reg[keep]))
        else:
            b = _regress(b, reg)
            keep = _nms(b, s, 0.7)
            b, s = b[keep], s[keep]
    return b.astype(np.float32), s.astype(np.float32)
