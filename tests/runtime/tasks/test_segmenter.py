"""Segmenter on the real YOLOv8n-seg (320): masks vs an independent numpy + cv2 reference of
Ultralytics 8.4's default masks (logits upsampled to the tensor, > 0, cropped to the box, then the
letterboxed content upsampled to the image, > 0.5). Per object mask IoU >= 0.98 (measured: 1.0,
identical masks on bus.jpg and zidane.jpg). Ultralytics' own masks: tests/runtime/tasks/test_fidelity.py."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import shared_file

from edgerun.runtime import open_model
from edgerun.runtime.tasks.segmenter import Segmenter

MODEL = ("models", "yolov8n-seg_320_fp32dq.onnx")


@pytest.fixture(scope="module")
def seg():
    return Segmenter.from_path(str(shared_file(*MODEL)))


def _reference_masks(outputs, det, geo, nc=80):
    raw, protos = outputs[0][0].astype(np.float64), outputs[1][0].astype(np.float64)
    idx = det.data["anchor_index"]
    m_, mh, mw = protos.shape
    th, tw = geo.dst_h, geo.dst_w
    coef = raw[4 + nc:4 + nc + m_, idx].T
    cx, cy, w, h = raw[:4, idx]
    b = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    logits = (coef @ protos.reshape(m_, -1)).reshape(-1, mh, mw)
    m = np.stack([cv2.resize(x, (tw, th), interpolation=cv2.INTER_LINEAR) > 0 for x in logits])
    c, r = np.arange(th)[None, :, None], np.arange(tw)[None, None, :]
    m &= (r >= b[:, 0, None, None]) & (r < b[:, 2, None, None]) & (c >= b[:, 1, None, None]) & \
        (c < b[:, 3, None, None])
    gain = min(th / geo.src_h, tw / geo.src_w)
    ch, cw = round(geo.src_h * gain), round(geo.src_w * gain)
    t, l = round((th - ch) / 2 - 0.1), round((tw - cw) / 2 - 0.1)
    return np.stack([cv2.resize(x[t:t + ch, l:l + cw].astype(np.float32), (geo.src_w, geo.src_h),
                                interpolation=cv2.INTER_LINEAR) > 0.5 for x in m])


@pytest.mark.parametrize("name,classes", [("bus.jpg", {5, 0}), ("zidane.jpg", {0})])
def test_masks_match_reference(seg, name, classes):
    img = cv2.imread(str(shared_file("images", name)))
    tensor, geo = seg.preprocess(img)
    outputs = [o.copy() for o in seg.infer(tensor)]
    det = seg.postprocess(outputs, geo)
    assert len(det) >= 2 and set(det.class_id.tolist()) == classes
    assert det.mask.shape == (len(det),) + img.shape[:2] and det.mask.dtype == np.bool_
    ref = _reference_masks(outputs, det, geo)
    iou = (ref & det.mask).sum((1, 2)) / np.maximum((ref | det.mask).sum((1, 2)), 1)
    assert iou.min() >= 0.98, iou
    # each mask lies inside its box up to a halo of one tensor pixel (the crop is at tensor resolution)
    halo = max(img.shape[:2]) / geo.dst_w + 1
    for m, (x1, y1, x2, y2) in zip(det.mask, det.xyxy):
        ys, xs = np.nonzero(m)
        assert xs.min() >= x1 - halo and xs.max() <= x2 + halo and ys.min() >= y1 - halo
        assert ys.max() <= y2 + halo


def test_mask_options(bus_bgr):
    path = str(shared_file(*MODEL))
    full = open_model(path).detect(bus_bgr)
    proto = open_model(path, masks="proto").detect(bus_bgr)
    none = open_model(path, masks="none").detect(bus_bgr)
    assert isinstance(open_model(path), Segmenter)
    np.testing.assert_array_equal(full.xyxy, none.xyxy)
    assert none.mask is None and none.data["mask_coefficients"].shape == (len(none), 32)
    pm = proto.data["proto_mask"]
    assert proto.mask is None and pm.shape == (len(proto), 80, 60)  # 810x1080 letterboxed in 80x80
    small = np.stack([cv2.resize(m.astype(np.uint8), (810, 1080), interpolation=cv2.INTER_NEAREST) for m in pm])
    iou = (small & full.mask).sum((1, 2)) / (small | full.mask).sum((1, 2))
    assert iou.min() > 0.8  # same objects, coarser outline


def test_open_model_task_detect_drops_masks(bus_bgr):
    det = open_model(str(shared_file(*MODEL)), task="detect").detect(bus_bgr)
    assert det.mask is None and len(det) >= 2


def test_objects_with_empty_masks_are_dropped(seg, bus_bgr):
    """Ultralytics' predictor drops a box whose mask has no pixel at tensor resolution
    (``masks.amax((-2, -1)) > 0``); so does Segmenter (full and proto). Zero coefficients give logits of
    exactly 0, never > 0: the bus loses its mask and its box, the people keep theirs."""
    tensor, geo = seg.preprocess(bus_bgr)
    outputs = [o.copy() for o in seg.infer(tensor)]
    before = seg.postprocess(outputs, geo)
    bus = int(np.flatnonzero(before.class_id == 5)[0])
    outputs[0][0, 84:116, before.data["anchor_index"][bus]] = 0.0
    after = seg.postprocess(outputs, geo)
    keep = np.arange(len(before)) != bus
    np.testing.assert_array_equal(after.xyxy, before.xyxy[keep])
    np.testing.assert_array_equal(after.mask, before.mask[keep])
    np.testing.assert_array_equal(after.data["anchor_index"], before.data["anchor_index"][keep])
    proto = open_model(str(shared_file(*MODEL)), masks="proto").postprocess(outputs, geo)
    assert len(proto) == len(after) and proto.data["proto_mask"].reshape(len(proto), -1).any(1).all()
