"""Ultralytics checkpoints: detection without unpickling, and the gate against YOLO(pt).predict.

Each checkpoint is exported once (imgsz 320, dynamic H/W: the default) by a module-scoped fixture and
verified on the shared photos, their square centre crops and the odd-sized copies, so both image
shapes are checked against the checkpoint's own rect-letterboxing predictor.
"""
import json
import os

import cv2
import pytest

from conftest import shared_file
from edgerun.export.ultra import compare_with_checkpoint, export_checkpoint, is_ultralytics_checkpoint

DEMO = os.path.join(os.path.dirname(__file__), "..", "..", "runtime", "data", "demo.onnx")
IMGSZ = 320


def _ultralytics():
    pytest.importorskip("ultralytics", reason="needs the ultralytics extra (CI's export lane: "
                        "pip install torch==2.14.1 torchvision==0.29.1, then ultralytics==8.4.190)")


@pytest.fixture(scope="module")
def verify_dir(tmp_path_factory):
    """The six shared photos, their square centre crops and the odd-sized copies (30 images)."""
    out = tmp_path_factory.mktemp("verify")
    photos = shared_file("images")
    for name in sorted(os.listdir(photos)):
        img = cv2.imread(str(photos / name))
        h, w = img.shape[:2]
        s = min(h, w)
        stem = os.path.splitext(name)[0]
        cv2.imwrite(str(out / f"{stem}.png"), img)
        cv2.imwrite(str(out / f"{stem}_square.png"), img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s])
    odd = shared_file("images-odd")
    for name in sorted(os.listdir(odd)):
        os.symlink(odd / name, out / name)
    return str(out)


def _check_gate(gate, min_boxes):
    assert gate["verified"] and gate["ok"], gate["problems"]
    assert set(gate["by_shape"]) == {"square", "non-square"}
    for shape, g in gate["by_shape"].items():
        assert g["ref_boxes"] >= min_boxes[shape], (shape, g)
        assert g["f1"] >= 0.99 and g["max_conf_diff"] <= 0.02 and g["max_keypoint_px"] <= 2.0, (shape, g)


@pytest.fixture(scope="module")
def fall(tmp_path_factory, verify_dir):
    _ultralytics()
    out = tmp_path_factory.mktemp("fall") / "fall.onnx"
    return export_checkpoint(str(shared_file("torch", "yolov8s_fall_best.pt")), str(out), imgsz=IMGSZ,
                             verify_images=verify_dir), out


def test_detects_ultralytics_checkpoints_without_unpickling(tmp_path):
    assert is_ultralytics_checkpoint(str(shared_file("torch", "yolov8s_fall_best.pt")))
    assert not is_ultralytics_checkpoint(DEMO)
    assert not is_ultralytics_checkpoint(str(shared_file("torch", "pnet.pt")))  # a plain state_dict
    (tmp_path / "x.pt").write_bytes(b"not a zip")
    assert not is_ultralytics_checkpoint(str(tmp_path / "x.pt"))


def test_fall_detector_matches_its_checkpoint_square_and_not(fall):
    """The fine-tuned 2-class YOLOv8s, dynamic H/W: the ONNX through edgerun reproduces YOLO(pt).predict."""
    report, out = fall
    _check_gate(report["checkpoint_gate"], {"square": 5, "non-square": 20})
    assert report["ok"] and report["dynamic"] and out.exists()
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_existing_output_is_refused_without_force(fall):
    from edgerun.export.torch_export import ExportError

    _, out = fall
    before = out.read_bytes()
    with pytest.raises(ExportError, match="exists; pass --force"):
        export_checkpoint(str(shared_file("torch", "yolov8s_fall_best.pt")), str(out))
    assert out.read_bytes() == before


def test_static_square_export_drifts_on_non_square_images(fall, verify_dir):
    """Ultralytics #26269: a static square export does not reproduce the .pt's rect letterboxing; the gate
    sees it. Checked on the fixture's checkpoint with a static re-export through Ultralytics only."""
    _ultralytics()
    from ultralytics import YOLO

    report, out = fall
    local = os.path.join(os.path.dirname(out), "static.pt")
    with open(report["checkpoint"], "rb") as src, open(local, "wb") as dst:
        dst.write(src.read())
    static = YOLO(local).export(format="onnx", imgsz=IMGSZ, dynamic=False, simplify=True, opset=17, device="cpu",
                                verbose=False)
    images = [(f, cv2.imread(os.path.join(verify_dir, f))) for f in sorted(os.listdir(verify_dir))]
    gate = compare_with_checkpoint(local, str(static), images, imgsz=IMGSZ)
    assert gate["by_shape"]["square"]["f1"] == 1.0
    assert not gate["ok"] and any(p.startswith("non-square") for p in gate["problems"]), gate["by_shape"]


def test_pose_checkpoint_through_the_cli(tmp_path, verify_dir, capsys):
    """YOLO11n-pose via `edgerun export best.pt`: boxes, confidences and keypoints match the checkpoint."""
    _ultralytics()
    from edgerun.runtime.cli import main

    out = tmp_path / "pose.onnx"
    assert main(["export", str(shared_file("torch", "yolo11n-pose.pt")), "-o", str(out), "--imgsz", str(IMGSZ),
                 "--verify-images", verify_dir, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    _check_gate(report["checkpoint_gate"], {"square": 5, "non-square": 20})
    assert report["checkpoint_gate"]["per_image"] and out.exists()


def test_checkpoint_without_images_is_not_verified_and_force_replaces(fall, capsys):
    """No --verify-images/--calib: the user has none of our photos, so no PASS, just "NOT VERIFIED" (exit 0)."""
    from edgerun.runtime.cli import main

    _, out = fall
    before = out.stat().st_mtime_ns
    assert main(["export", str(shared_file("torch", "yolov8s_fall_best.pt")), "-o", str(out), "--imgsz", str(IMGSZ),
                 "--force"]) == 0
    text = capsys.readouterr().out
    assert "NOT VERIFIED" in text and "PASS" not in text and out.stat().st_mtime_ns != before
