"""Ultralytics checkpoints: detection without unpickling, and the gate against YOLO(pt).predict."""
import os

import pytest
from helpers import shared_dir

from edgerun.export.ultra import export_checkpoint, is_ultralytics_checkpoint

SHARED = str(shared_dir())
FALL = os.path.join(SHARED, "torch", "yolov8s_fall_best.pt")
DEMO = os.path.join(os.path.dirname(__file__), "..", "..", "runtime", "data", "demo.onnx")


def _need(path):
    if not os.path.exists(path):
        pytest.skip(f"{path} absent (../shared holds the real checkpoints)")


def test_detects_ultralytics_checkpoints_without_unpickling(tmp_path):
    _need(FALL)
    assert is_ultralytics_checkpoint(FALL)
    assert not is_ultralytics_checkpoint(DEMO)
    (tmp_path / "x.pt").write_bytes(b"not a zip")
    assert not is_ultralytics_checkpoint(str(tmp_path / "x.pt"))


def test_square_export_is_refused_on_non_square_drift(tmp_path):
    """A square 640 export does not reproduce the .pt's rect letterboxing on non-square photos: the gate says so."""
    pytest.importorskip("ultralytics", reason="needs the ultralytics extra (export lane)")
    _need(FALL)
    from edgerun.export.torch_export import ExportError

    out = tmp_path / "fall.onnx"
    with pytest.raises(ExportError, match="non-square: box F1"):
        export_checkpoint(FALL, str(out), verify_images=os.path.join(SHARED, "images"))
    assert not out.exists()
