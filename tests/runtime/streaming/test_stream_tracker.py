"""ByteTracker on synthetic sequences with known ground-truth tracks: MOTA and ID switches."""
from __future__ import annotations

import numpy as np
import pytest

from edgerun.kernels.assign import box_iou, linear_assignment
from edgerun.runtime.results import Detections
from edgerun.runtime.streaming.tracker import ByteTracker


def _scene(seed: int, frames: int = 80, objects: int = 6, miss: float = 0.1, clutter: int = 2):
    """Ground truth boxes per frame (id -> box) and noisy detections (misses, jitter, clutter)."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(50, 550, (objects, 2))
    vel = rng.uniform(-4, 4, (objects, 2))
    size = rng.uniform(30, 70, (objects, 2))
    truth, dets = [], []
    for f in range(frames):
        c = start + vel * f
        boxes = np.concatenate([c - size / 2, c + size / 2], 1).astype(np.float32)
        truth.append({k + 1: boxes[k] for k in range(objects)})
        keep = rng.random(objects) > miss
        noisy = boxes[keep] + rng.normal(0, 1.5, (keep.sum(), 4)).astype(np.float32)
        conf = rng.uniform(0.55, 0.95, keep.sum())
        low = rng.random(keep.sum()) < 0.15  # occasionally a weak (low-score) detection
        conf[low] = rng.uniform(0.15, 0.45, low.sum())
        junk_xy = rng.uniform(0, 600, (clutter, 2))
        junk = np.concatenate([junk_xy, junk_xy + 20], 1).astype(np.float32)
        dets.append(Detections(np.concatenate([noisy, junk]).astype(np.float32),
                               np.concatenate([conf, rng.uniform(0.1, 0.3, clutter)]).astype(np.float32),
                               np.zeros(keep.sum() + clutter, np.int64)))
    return truth, dets


def _mot(truth, tracked) -> tuple[float, int]:
    """CLEAR-MOT MOTA and identity switches (IoU >= 0.5 matching, Hungarian per frame)."""
    fn = fp = idsw = gt_total = 0
    last: dict[int, int] = {}
    for gt, d in zip(truth, tracked):
        keep = d.tracker_id >= 0
        boxes, ids = d.xyxy[keep], d.tracker_id[keep]
        g_ids = list(gt)
        g_boxes = np.stack([gt[k] for k in g_ids]).astype(np.float32)
        pairs = linear_assignment(1 - box_iou(g_boxes, boxes), 0.5) if len(boxes) else np.zeros((0, 2), int)
        gt_total += len(g_ids)
        fn += len(g_ids) - len(pairs)
        fp += len(boxes) - len(pairs)
        for g, p in pairs:
            gid, pid = g_ids[g], int(ids[p])
            idsw += gid in last and last[gid] != pid
            last[gid] = pid
    return 1 - (fn + fp + idsw) / gt_total, idsw


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tracker_recovers_ground_truth_tracks(seed):
    truth, dets = _scene(seed)
    tracker = ByteTracker()
    tracked = [tracker.update(d) for d in dets]
    mota, idsw = _mot(truth, tracked)
    assert mota >= 0.8, mota
    assert idsw <= 2, idsw
    assert all(len(t) == len(d) and t.tracker_id.dtype == np.int64 for t, d in zip(tracked, dets))


def test_tracker_reset_and_empty_frames():
    truth, dets = _scene(3, frames=10)
    tracker = ByteTracker()
    for d in dets:
        tracker.update(d)
    assert tracker.update(Detections.empty()).tracker_id.shape == (0,)
    tracker.reset()
    first = tracker.update(dets[0])
    assert sorted(first.tracker_id[first.confidence >= 0.6].tolist())[0] == 1  # ids restart at 1


def test_tracker_keeps_identity_through_a_short_gap():
    box = np.array([[100, 100, 150, 200]], np.float32)
    tracker = ByteTracker()
    ids = []
    for f in range(20):
        shifted = box + np.float32(3 * f) * np.array([1, 0, 1, 0], np.float32)
        d = Detections(shifted, np.array([0.9], np.float32), np.zeros(1, np.int64))
        if 8 <= f < 12:  # occluded for 4 frames
            d = Detections.empty()
        ids += tracker.update(d).tracker_id.tolist()
    assert set(ids) == {1}


def test_tracker_on_vtest_keeps_ids_between_frames():
    from conftest import shared_file

    from edgerun.runtime import open_model
    from edgerun.runtime.streaming.runner import stream

    model = open_model(str(shared_file("models", "yolov8n_320_int8dyn.onnx")))
    video = str(shared_file("video", "vtest.avi"))
    seen: set[int] = set()
    kept = total = 0
    for r in stream(model, video, max_frames=10, tracker=ByteTracker()):
        ids = set(r.detections.tracker_id[r.detections.tracker_id >= 0].tolist())
        if r.index >= 3:
            kept, total = kept + len(ids & seen), total + len(ids)
        seen |= ids
    assert total > 0 and kept / total >= 0.8, (kept, total)
