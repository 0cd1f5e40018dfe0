"""tests/arm64/compare.py, the arm64 lane's check, fails on the mismatches it exists to catch."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import main  # noqa: E402 - the lane's script, beside this test

BUS = [{"xyxy": [671.82, 375.2, 809.72, 878.86], "confidence": 0.90711, "class_id": 0},
       {"xyxy": [33.94, 230.21, 799.8, 769.92], "confidence": 0.83223, "class_id": 5},
       {"xyxy": [0.0, 550.04, 56.76, 871.42], "confidence": 0.27399, "class_id": 0}]


def run(tmp_path, x86, arm, mode="--exact"):
    for side, dets in (("x86", x86), ("arm", arm)):
        (tmp_path / side).mkdir(exist_ok=True)
        rec = {"source": "/s/images/bus.jpg", "frame": 0, "detections": dets}
        (tmp_path / side / "m.jsonl").write_text(json.dumps(rec) + "\n")
    return main(["--x86", str(tmp_path / "x86"), "--arm", str(tmp_path / "arm"), mode, "m"])


def moved(dets, i, dx, **kw):
    out = [dict(d) for d in dets]
    out[i] = {**out[i], "xyxy": [v + dx for v in out[i]["xyxy"]], **kw}
    return out


def test_exact(tmp_path):
    assert run(tmp_path, BUS, BUS) == 0
    assert run(tmp_path, BUS, moved(BUS, 0, 0.4)) == 0
    assert run(tmp_path, BUS, moved(BUS, 0, 0.6)) == 1           # a corner 0.6 px off
    assert run(tmp_path, BUS, BUS[:2]) == 1                       # one object missing, even a weak one
    assert run(tmp_path, BUS, moved(BUS, 1, 0.0, class_id=7)) == 1  # another class
    kp = [{**BUS[0], "keypoints": [[1.0, 2.0], [3.0, 4.0]]}]
    assert run(tmp_path, kp, [{**kp[0], "keypoints": [[1.0, 2.0], [3.0, 4.7]]}]) == 1


def test_gate(tmp_path):
    assert run(tmp_path, BUS, moved(BUS, 0, 3.0, confidence=0.85), "--gate") == 0  # IoU still >= 0.9
    assert run(tmp_path, BUS, BUS[:2], "--gate") == 0             # 0.27 is borderline: reported only
    assert run(tmp_path, BUS, BUS[1:], "--gate") == 1             # a solid person missing
    assert run(tmp_path, BUS, moved(BUS, 1, 60.0), "--gate") == 1  # the bus moved: IoU < 0.9
