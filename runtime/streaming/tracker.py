"""ByteTrack-style multi-object tracker: a separate object fed ``Detections`` frame by frame.

    tracker = ByteTracker()
    for r in stream(model, "video.mp4"):
        d = tracker.update(r.detections)   # d.tracker_id: (N,) int64, -1 = not (yet) tracked

Algorithm (Zhang et al., ByteTrack, ECCV 2022, as in its reference implementation): Kalman filter on
(cx, cy, aspect, h) with constant velocity; first association of all tracks (tracked + lost) with
high-score detections on 1 - IoU x score, second association of the still-unmatched tracked tracks
with low-score detections on 1 - IoU, then unconfirmed tracks; a new track needs score >=
``new_track_threshold`` and is confirmed on its second hit (immediately on the first frame); lost
tracks are kept ``track_buffer`` frames. Matching is Hungarian (``kernels.assign``).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgerun.kernels.assign import box_iou, linear_assignment

from ..results import Detections

__all__ = ["ByteTracker", "KalmanXYAH"]


class KalmanXYAH:
    """Constant-velocity Kalman filter on (cx, cy, a, h); ByteTrack's noise model."""

    def __init__(self, std_position: float = 1 / 20, std_velocity: float = 1 / 160):
        self.F = np.eye(8)
        self.F[:4, 4:] = np.eye(4)
        self.H = np.eye(4, 8)
        self.sp, self.sv = std_position, std_velocity

    def initiate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = z[3]
        std = np.array([2 * self.sp * h, 2 * self.sp * h, 1e-2, 2 * self.sp * h,
                        10 * self.sv * h, 10 * self.sv * h, 1e-5, 10 * self.sv * h])
        return np.r_[z, np.zeros(4)], np.diag(std ** 2)

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = mean[3]
        q = np.r_[self.sp * h, self.sp * h, 1e-2, self.sp * h, self.sv * h, self.sv * h, 1e-5, self.sv * h]
        return self.F @ mean, self.F @ cov @ self.F.T + np.diag(q ** 2)

    def update(self, mean: np.ndarray, cov: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = mean[3]
        r = np.diag(np.array([self.sp * h, self.sp * h, 1e-1, self.sp * h]) ** 2)
        s = self.H @ cov @ self.H.T + r
        gain = np.linalg.solve(s, self.H @ cov).T
        return mean + gain @ (z - self.H @ mean), cov - gain @ s @ gain.T


def _xyah(b: np.ndarray) -> np.ndarray:
    w, h = b[2] - b[0], b[3] - b[1]
    return np.array([b[0] + w / 2, b[1] + h / 2, w / max(h, 1e-6), max(h, 1e-6)])


def _xyxy(m: np.ndarray) -> np.ndarray:
    w = m[2] * m[3]
    return np.array([m[0] - w / 2, m[1] - m[3] / 2, m[0] + w / 2, m[1] + m[3] / 2], np.float32)


class _Track:
    def __init__(self, kf: KalmanXYAH, box: np.ndarray, score: float, frame: int):
        self.mean, self.cov = kf.initiate(_xyah(box))
        self.score, self.frame, self.hits = score, frame, 1
        self.track_id = -1
        self.state = "new"  # new (unconfirmed) -> tracked <-> lost -> removed

    def box(self) -> np.ndarray:
        return _xyxy(self.mean)


class ByteTracker:
    """Assigns persistent ``tracker_id``s to detections (class-agnostic, like ByteTrack)."""

    def __init__(self, high_threshold: float = 0.5, low_threshold: float = 0.1,
                 new_track_threshold: float = 0.6, match_threshold: float = 0.8,
                 track_buffer: int = 30):
        self.high, self.low, self.new = high_threshold, low_threshold, new_track_threshold
        self.match_threshold, self.track_buffer = match_threshold, track_buffer
        self.kf = KalmanXYAH()
        self.reset()

    def reset(self) -> None:
        """Forget every track; ids restart at 1."""
        self.tracks: list[_Track] = []
        self.frame = 0
        self._next_id = 1

    def update(self, det: Detections) -> Detections:
        """Associate one frame's detections; returns a copy with ``tracker_id`` set (-1: untracked)."""
        self.frame += 1
        ids = np.full(len(det), -1, np.int64)
        xyxy, conf = det.xyxy.astype(np.float32), det.confidence.astype(np.float32)
        for t in self.tracks:
            t.mean, t.cov = self.kf.predict(t.mean, t.cov)
        high = np.flatnonzero(conf >= self.high)
        low = np.flatnonzero((conf >= self.low) & (conf < self.high))
        confirmed = [t for t in self.tracks if t.state in ("tracked", "lost")]
        unconfirmed = [t for t in self.tracks if t.state == "new"]
        rest_t, rest_d = self._match(confirmed, xyxy, conf, high, ids, self.match_threshold, True)
        still = [t for t in rest_t if t.state == "tracked"]
        left_t, _ = self._match(still, xyxy, conf, low, ids, 0.5, False)
        for t in left_t:
            t.state = "lost"
        for t in rest_t:
            if t.state == "lost" and self.frame - t.frame > self.track_buffer:
                t.state = "removed"
        gone, rest_d = self._match(unconfirmed, xyxy, conf, rest_d, ids, 0.7, True)
        for t in gone:
            t.state = "removed"
        for i in rest_d:
            if conf[i] >= self.new:
                self._start(xyxy[i], float(conf[i]), i, ids)
        self.tracks = [t for t in self.tracks if t.state != "removed"]
        return replace(det, tracker_id=ids)

    def _match(self, tracks: list[_Track], xyxy: np.ndarray, conf: np.ndarray, idx: np.ndarray,
               ids: np.ndarray, threshold: float, fuse: bool) -> tuple[list[_Track], np.ndarray]:
        """Hungarian on 1 - IoU (x score when ``fuse``); updates matches, returns the leftovers."""
        if not tracks or idx.size == 0:
            return list(tracks), idx
        boxes = np.stack([t.box() for t in tracks]).astype(np.float32)
        iou = box_iou(boxes, np.ascontiguousarray(xyxy[idx]))
        cost = 1.0 - (iou * conf[idx][None, :] if fuse else iou)
        pairs = linear_assignment(cost, threshold)
        for r, c in pairs:
            self._hit(tracks[r], xyxy[idx[c]], float(conf[idx[c]]), idx[c], ids)
        matched_t, matched_d = set(pairs[:, 0].tolist()), set(pairs[:, 1].tolist())
        left = [t for k, t in enumerate(tracks) if k not in matched_t]
        return left, np.array([d for k, d in enumerate(idx) if k not in matched_d], np.int64)

    def _hit(self, t: _Track, box: np.ndarray, score: float, i: int, ids: np.ndarray) -> None:
        t.mean, t.cov = self.kf.update(t.mean, t.cov, _xyah(box))
        t.score, t.frame, t.hits = score, self.frame, t.hits + 1
        if t.state == "new":
            t.track_id, self._next_id = self._next_id, self._next_id + 1
        t.state = "tracked"
        ids[i] = t.track_id

    def _start(self, box: np.ndarray, score: float, i: int, ids: np.ndarray) -> None:
        t = _Track(self.kf, box, score, self.frame)
        if self.frame == 1:
            t.state, t.track_id, self._next_id = "tracked", self._next_id, self._next_id + 1
            ids[i] = t.track_id
        self.tracks.append(t)
