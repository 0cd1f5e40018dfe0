"""Hostile and broken ONNX models: >= 100 generated files, each refused quickly and cleanly.

``hostile_driver.py`` opens every model in one child process (``edgerun info`` and ``edgerun
export`` in-process, and ``Detector.from_path``), each answer timed (10 s at most); a few models
also go through the real ``edgerun info`` and ``edgerun export`` commands in their own process.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hostile_models import SENTINEL, control_model, make_models
from reliability_util import HERE, json_records, run_child, run_cli

from edgerun.runtime import Detector

# `edgerun info` prints what it can describe of every model that loads (so users see what to
# override) and exits 2 when no task can run it. One "no head" model has a (1, 7) output: a valid
# 7-class classifier, so info may accept it (exit 0); Detector.from_path and export refuse it.
INFO_MAY_ACCEPT = ("no_head_0.onnx",)


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    models = make_models(root)
    listing = root / "models.txt"
    listing.write_text("".join(f"{p}\n" for _, p in models), encoding="utf-8")
    before = _tree(root)
    cwd = tmp_path_factory.mktemp("cwd")
    out = tmp_path_factory.mktemp("export-out")
    res = run_child([sys.executable, str(HERE / "hostile_driver.py"), str(listing), str(out)], cwd=str(cwd),
                    timeout=400)
    assert res.returncode == 0, res.describe()
    recs = {r["path"]: r for r in json_records(res.stdout)}
    return {"root": root, "models": models, "recs": recs, "before": before, "cwd": cwd, "out": out}


def test_at_least_100_models_all_refused_by_detector(hostile):
    models, recs = hostile["models"], hostile["recs"]
    assert len(models) >= 100
    assert len(recs) == len(models)
    for cat, path in models:
        r = recs[str(path)]
        assert r["error_type"] is not None, f"{cat}: {path} was loaded"
        assert "EdgerunError" in r["mro"], f"{cat}: {r['error_type']}: {r['error']}"
        assert "\n" not in r["error"].strip() and len(r["error"]) < 1200, r["error"]


def test_info_refuses_with_one_clean_line(hostile):
    for cat, path in hostile["models"]:
        r = hostile["recs"][str(path)]
        if os.path.basename(path) in INFO_MAY_ACCEPT:
            assert r["info_exit"] in (0, 2), r
            continue
        assert r["info_exit"] == 2, f"{cat}: {path}: {r}"
        assert "Traceback" not in r["info_stderr"]
        assert r["info_stderr"].startswith("edgerun: error: "), r["info_stderr"]


def test_export_refuses_every_model_in_one_line(hostile):
    """Including the valid ONNX files whose outputs fit no head: export writes the edgerun contract
    and verifies decoded boxes, so it needs a head."""
    for cat, path in hostile["models"]:
        r = hostile["recs"][str(path)]
        assert r["export_exit"] == 2, f"{cat}: {path}: {r}"
        err = r["export_stderr"]
        assert "Traceback" not in err and err.startswith("edgerun: error: "), f"{cat}: {err}"
        assert len(err.strip().splitlines()) == 1, f"{cat}: {err}"


def test_every_answer_within_10_s(hostile):
    for cat, path in hostile["models"]:
        r = hostile["recs"][str(path)]
        slow = {k: round(r[k], 2) for k in ("info_s", "load_s", "export_s") if r[k] >= 10}
        assert not slow, f"{cat}: {path}: {slow}"


def test_external_data_outside_is_refused_by_the_precheck_before_ort(hostile):
    n = 0
    for cat, path in hostile["models"]:
        if not cat.startswith("external_outside"):
            continue
        n += 1
        r = hostile["recs"][str(path)]
        assert "outside the model's folder" in r["error"], (cat, r["error"])
        assert "check_model_file" in r["frames"], r["frames"]
        assert not r["ort_called"], f"{cat}: onnxruntime saw the model (info, from_path or export)"
    assert n >= 28


def test_nothing_is_written(hostile):
    assert _tree(hostile["root"]) == hostile["before"]
    assert list(hostile["cwd"].iterdir()) == []
    assert list(hostile["out"].iterdir()) == []  # no output, no staged temporary left behind


def test_sentinel_sized_controls_load(tmp_path):
    """The same tiny graph with weights inline or in a file inside its folder works."""
    img = np.zeros((48, 64, 3), np.uint8)
    for external in (False, True):
        det = Detector.from_path(str(control_model(tmp_path, external)))
        assert det.spec.head == "yolov8" and det.detect(img).xyxy.shape[1] == 4
    assert SENTINEL not in (tmp_path / "control_ext" / "weights.bin").read_bytes()


@pytest.mark.parametrize("category", ["external_outside/initializer/symlink", "truncated", "opset_too_new",
                                      "absurd_output_shape", "no_head"])
@pytest.mark.parametrize("command", ["info", "export"])
def test_real_cli_exits_2_without_traceback(hostile, category, command, tmp_path):
    path = [p for c, p in hostile["models"] if c == category][-1]  # no_head: not the classifier-shaped one
    extra = ["-o", str(tmp_path / "out.onnx")] if command == "export" else []
    res = run_cli([command, str(path), *extra], timeout=60)
    assert res.returncode == 2, res.describe()
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("edgerun: error: ")]
    assert len(lines) == 1 and str(path) in lines[0], res.stderr
    assert list(tmp_path.iterdir()) == []
