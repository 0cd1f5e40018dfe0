"""PoseDetector on the real YOLO11n-pose: fidelity with Ultralytics, accuracy on coco8-pose, and a
synthetic encode -> decode round trip of the coco8-pose ground truth."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import SHARED, shared_file
from helpers import match

from edgerun.kernels.preprocess import plan
from edgerun.runtime import open_model
from edgerun.runtime.tasks.pose import PoseDetector

MODEL = ("models", "yolo11n-pose_640_fp32.onnx")
SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10


@pytest.fixture(scope="module")
def pose():
    return PoseDetector.from_path(str(shared_file(*MODEL)))


def _labels(img_path):
    """coco8-pose labels of one image in source pixels: boxes (P, 4) xyxy, keypoints (P, 17, 3)."""
    txt = str(img_path).replace("/images/", "/labels/").rsplit(".", 1)[0] + ".txt"
    h, w = cv2.imread(str(img_path)).shape[:2]
    rows = np.loadtxt(txt, ndmin=2)
    cx, cy, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
    kpt = rows[:, 5:].reshape(-1, 17, 3) * [w, h, 1]
    return boxes, kpt, (h, w)


def _coco8_images():
    root = shared_file("datasets", "coco8-pose", "images")
    return sorted(root.glob("*/*.jpg"))


def test_spec_from_ultralytics_metadata(pose):
    assert (pose.spec.task, pose.spec.kpt_shape, pose.spec.num_classes) == ("pose", (17, 3), 1)
    assert isinstance(open_model(str(shared_file(*MODEL))), PoseDetector)


def test_matches_ultralytics_refs(pose):
    """Every person matches Ultralytics 8.4.190: box IoU >= 0.95, keypoints within 1 px, conf 0.01
    (measured: worst IoU 0.994, keypoints 0.72 px, confidences 5e-6)."""
    refs = json.loads(shared_file("refs", "ultralytics_pose.json").read_text())["yolo11n-pose_640_fp32"]
    for key, ref in refs.items():
        if key.startswith("_"):
            continue
        d = pose.detect(cv2.imread(str(SHARED / key)))
        rxy = np.array([r["xyxy"] for r in ref]).reshape(-1, 4)
        rconf = np.array([r["conf"] for r in ref])
        rk = np.array([r["kpts"] for r in ref]).reshape(-1, 17, 3)
        pairs, extra, missing = match(d.xyxy, d.confidence, d.class_id, rxy, rconf, np.zeros(len(ref)), 0.95)
        assert not extra and not missing, key
        for i, j, _ in pairs:
            assert abs(d.confidence[i] - rconf[j]) <= 0.01
            np.testing.assert_allclose(d.data["keypoints"][i], rk[j, :, :2], atol=1.0, err_msg=key)
            np.testing.assert_allclose(d.data["keypoint_confidence"][i], rk[j, :, 2], atol=0.01)


def _oks(pred, gt, area):
    vis = gt[:, 2] > 0
    d2 = ((pred - gt[:, :2]) ** 2).sum(-1)
    e = d2 / (2 * area * (2 * SIGMAS) ** 2 + np.spacing(1))  # COCO: var = (2 sigma)^2, s^2 = area
    return float(np.exp(-e)[vis].mean()) if vis.any() else np.nan


def test_coco8_pose_accuracy(pose):
    """Persons found (IoU >= 0.5) and mean OKS vs labels (area = 0.53 box area, as Ultralytics);
    MANIFEST: 18/21 persons, mean OKS 0.70."""
    found = total = 0
    oks = []
    for img in _coco8_images():
        boxes, kpt, _ = _labels(img)
        d = pose.detect(cv2.imread(str(img)))
        total += len(boxes)
        pairs, _, _ = match(d.xyxy, d.confidence, d.class_id, boxes, np.ones(len(boxes)),
                            np.zeros(len(boxes)), 0.5)
        found += len(pairs)
        for i, j, _ in pairs:
            wh = boxes[j, 2:] - boxes[j, :2]
            oks.append(_oks(d.data["keypoints"][i], kpt[j], wh.prod() * 0.53))
    mean_oks = float(np.nanmean(oks))
    print(f"coco8-pose: {found}/{total} persons, mean OKS {mean_oks:.3f}")
    assert found >= 18 and total == 21
    assert mean_oks >= 0.65


def test_round_trip_of_ground_truth(pose):
    """Encode labels into a (1, 56, 8400) head at known anchors, decode: the same persons come back
    (boxes and keypoints within 1e-3 px, keypoint conf exact, score order kept)."""
    for img in _coco8_images():
        boxes, kpt, (h, w) = _labels(img)
        geo = plan(h, w, 640)
        head = np.zeros((1, 56, 8400), np.float32)
        anchors = np.arange(len(boxes)) * 97 + 5
        t = boxes * ([geo.scale_x, geo.scale_y] * 2) + [geo.pad_x, geo.pad_y] * 2  # per-axis gains
        head[0, 0, anchors], head[0, 1, anchors] = (t[:, 0] + t[:, 2]) / 2, (t[:, 1] + t[:, 3]) / 2
        head[0, 2, anchors], head[0, 3, anchors] = t[:, 2] - t[:, 0], t[:, 3] - t[:, 1]
        head[0, 4, anchors] = 0.9 - 0.01 * np.arange(len(boxes))
        kt = kpt.copy()
        kt[..., 0] = kpt[..., 0] * geo.scale_x + geo.pad_x
        kt[..., 1] = kpt[..., 1] * geo.scale_y + geo.pad_y
        kt[..., 2] = kpt[..., 2] / 2  # visibility 0/1/2 -> conf 0/0.5/1
        head[0, 5:, anchors] = kt.reshape(len(boxes), 51)
        pose.iou_threshold = 1.0  # keep overlapping people: this checks decoding, not NMS
        try:
            d = pose.postprocess([head], geo)
        finally:
            pose.iou_threshold = 0.7
        assert d.data["anchor_index"].tolist() == anchors.tolist()
        np.testing.assert_allclose(d.xyxy, boxes.clip(0, [w, h, w, h]), atol=1e-3)
        np.testing.assert_allclose(d.data["keypoints"], kpt[..., :2], atol=1e-3)
        np.testing.assert_array_equal(d.data["keypoint_confidence"], kt[..., 2].astype(np.float32))
