"""Classify, semantic and depth exports run in edgerun as Ultralytics runs them (export lane).

- classify: the trained YOLO26n-cls Food-101 checkpoint in ../shared, exported by Ultralytics (imgsz 224,
  static and dynamic=True): ``YOLO(onnx).predict`` vs ``open_model(onnx).run`` on the food photos and the
  shared tall / wide / square photos: top-1 and top-5 equal, every probability within 0.01.
- semantic / depth: ``yolo26n-sem`` / ``yolo26n-depth`` built from Ultralytics' yamls by ``ultra_zoo``
  (backbone seeded by name and shape from the YOLO26n-cls checkpoint, torch seed 0), the random final conv
  of the head rescaled on a real photo so the output depends on the image (``_spread_head``), exported by
  Ultralytics (static and dynamic=True; semantic also as logits, the baked ArgMax cut off the graph):
  >= 99% of the semantic pixels equal, depth within 1% median relative error, on tall, wide and square
  photos. Each test also asserts the reference varies (several classes, depth spread, different images
  giving different outputs), so a constant model cannot pass.
- ``edgerun export best.pt`` (``export_checkpoint``) gates each of the three tasks against its checkpoint.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import shared_file
from ultra_zoo import ENTRIES, ZooEntry, register

pytest.importorskip("ultralytics", reason="needs the ultralytics extra (CI's export lane)")

CLS_PT = ("torch", "yolo26n-cls_food101_best.pt")
FOOD = [("images-food", f"{n}.jpg") for n in (2, 3, 5)]
SHAPES = [("images", "bus.jpg"), ("images", "zidane.jpg"), ("images", "astronaut.png")]  # tall, wide, square
MAX_PROB_DIFF = 0.01
MIN_PIXELS = 0.99
MAX_DEPTH_REL = 0.01
FIGURES: list[str] = []

for _e in (ZooEntry("yolo26n-sem", "yolo26n-sem.yaml", "semantic", ("pt", CLS_PT), raise_biases=False),
           ZooEntry("yolo26n-depth", "yolo26n-depth.yaml", "depth", ("pt", CLS_PT), raise_biases=False)):
    if _e.name not in ENTRIES:
        register(_e)


@pytest.fixture(scope="module", autouse=True)
def _print_figures():
    yield
    if FIGURES:
        print("\n" + "\n".join(FIGURES))


def _yolo(path, task):
    from ultralytics import YOLO

    return YOLO(str(path), task=task)


def _predict(model, image_path, **kw):
    return model.predict(str(image_path), verbose=False, device="cpu", **kw)[0]


def _np(x):
    return x.cpu().numpy() if hasattr(x, "cpu") else np.asarray(x)


# ------------------------------------------------------------------------------------------ classify
@pytest.fixture(scope="module")
def cls_onnx(ultra_zoo):
    pt = shared_file(*CLS_PT)
    return {dyn: ultra_zoo.export_checkpoint(pt, ultra_zoo.folder / f"yolo26n-cls_food101{'_dyn' if dyn else ''}.onnx",
                                             dynamic=dyn, imgsz=224) for dyn in (False, True)}


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_classify_trained_checkpoint(cls_onnx, dynamic):
    from edgerun.runtime import open_model

    path = cls_onnx[dynamic]
    ref_model, ours = _yolo(path, "classify"), open_model(str(path))
    assert ours.spec.interpolation == "pil_bilinear" and ours.spec.input_size == (224, 224)
    # Ultralytics' predictor ignores the export's imgsz for a dynamic model and runs its default 640; edgerun
    # runs the size the classifier was trained at (metadata imgsz), and reproduces the 640 run when asked
    kw = {"imgsz": 224} if dynamic else {}
    if dynamic:
        img_path = shared_file(*FOOD[0])
        at640 = open_model(str(path), input_size=(640, 640)).run(cv2.imread(str(img_path)))
        r = _predict(ref_model, img_path)
        assert at640.class_id[:5].tolist() == list(r.probs.top5)
        assert float(np.abs(_np(r.probs.data) - at640.probabilities).max()) <= MAX_PROB_DIFF
    top1s, worst = [], 0.0
    for parts in FOOD + SHAPES:
        img_path = shared_file(*parts)
        r = _predict(ref_model, img_path, **kw)
        d = ours.run(cv2.imread(str(img_path)))
        ref = _np(r.probs.data).astype(np.float32)
        diff = float(np.abs(ref - d.probabilities).max())
        worst = max(worst, diff)
        assert int(d.class_id[0]) == r.probs.top1, f"{parts[-1]}: top-1 {int(d.class_id[0])} vs {r.probs.top1}"
        assert d.class_id[:5].tolist() == list(r.probs.top5), f"{parts[-1]}: top-5 differ"
        assert diff <= MAX_PROB_DIFF, f"{parts[-1]}: probabilities differ by {diff:.4f}"
        top1s.append(r.probs.top1)
    assert len(set(top1s[:3])) == 3, f"the food photos should be three different dishes, got {top1s[:3]}"
    FIGURES.append(f"classify yolo26n-cls food101 {'dynamic' if dynamic else 'static'}: top-1 {len(top1s)}/"
                   f"{len(top1s)}, top-5 {len(top1s)}/{len(top1s)}, max prob diff {worst:.5f}")


# ------------------------------------------------------------------------------------------ dense
def _spread_head(pt: Path, out: Path, task: str) -> Path:
    """Rescale the random final conv of the semantic / depth head so its output varies across a real photo
    (std 2 per class logit, bias 0; log-depth std 0.3 around 0.182): the trained backbone's features then
    show through."""
    import torch

    if out.exists():
        return out
    ckpt = torch.load(str(pt), weights_only=False, map_location="cpu")
    model = ckpt["model"].float().eval()
    head = model.model[-1]
    conv = head.classifier[-1] if task == "semantic" else head.head[-1]
    seen = {}
    hook = conv.register_forward_hook(lambda m, i, o: seen.setdefault("y", o.detach()))
    img = cv2.resize(cv2.imread(str(shared_file("images", "bus.jpg"))), (640, 640))
    x = torch.from_numpy(img[:, :, ::-1].transpose(2, 0, 1).copy()).float()[None] / 255
    with torch.no_grad():
        model(x)
        hook.remove()
        y = seen["y"][0]
        if task == "semantic":
            conv.bias.zero_()
            conv.weight.mul_((2.0 / y.flatten(1).std(1).clamp_min(1e-6))[:, None, None, None])
        else:  # log-depth: std 0.3 around the head's own initial 0.182 (~1.2 m), inside its clamp
            k = 0.3 / float(y.std().clamp_min(1e-6))
            conv.weight.mul_(k)
            conv.bias.copy_(0.182 - k * (y.mean() - conv.bias))
    ckpt["model"] = model
    torch.save(ckpt, str(out))
    return out


@pytest.fixture(scope="module")
def dense(ultra_zoo):
    """task -> {mode: ONNX path} and the spread checkpoints; modes: static, dynamic (+ logits for semantic)."""
    out = {}
    for name, task in (("yolo26n-sem", "semantic"), ("yolo26n-depth", "depth")):
        pt = _spread_head(ultra_zoo.checkpoint(name), ultra_zoo.folder / f"{name}_spread.pt", task)
        paths = {m: ultra_zoo.export_checkpoint(pt, ultra_zoo.folder / f"{name}_{m}.onnx", dynamic=m == "dynamic")
                 for m in ("static", "dynamic")}
        if task == "semantic":
            paths["logits"] = _logits_export(paths["static"], ultra_zoo.folder / f"{name}_logits.onnx")
        out[task] = {"pt": pt, **paths}
    return out


def _logits_export(baked: Path, out: Path) -> Path:
    """The baked export with its ArgMax (and the Cast after it) removed: the graph then outputs the
    (1, C, H, W) logits, as Ultralytics' non-baking formats do; metadata kept."""
    import onnx
    from onnx import TensorProto, helper

    if out.exists():
        return out
    m = onnx.load(str(baked))
    g = m.graph
    argmax = next(n for n in g.node if n.op_type == "ArgMax")
    dead = {argmax.output[0]}
    keep = []
    for n in g.node:
        if n is argmax or any(i in dead for i in n.input):
            dead.update(n.output)
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    name = g.output[0].name
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(argmax.input[0], TensorProto.FLOAT, None))
    assert name in dead
    onnx.save(m, str(out))
    return out


@pytest.mark.parametrize("mode", ["static", "dynamic", "logits"])
def test_semantic_vs_ultralytics(dense, mode):
    from edgerun.runtime import SemanticSegmenter, open_model

    path = dense["semantic"][mode]
    ref_model, ours = _yolo(path, "semantic"), open_model(str(path))
    assert isinstance(ours, SemanticSegmenter)
    if mode == "logits":
        assert len(ours.session.outputs[0].shape) == 4
    worst, hists = 1.0, []
    for parts in SHAPES + FOOD[1:2]:
        img_path = shared_file(*parts)
        ref = _np(_predict(ref_model, img_path).semantic_mask.data)
        got = ours.run(cv2.imread(str(img_path))).label_map
        assert got.shape == ref.shape
        agree = float((got == ref).mean())
        worst = min(worst, agree)
        classes = np.unique(ref)
        assert len(classes) > 1, f"{parts[-1]}: the reference map is one class: the test could not fail"
        assert agree >= MIN_PIXELS, f"{parts[-1]}: {agree:.4f} of the pixels agree"
        hists.append(np.bincount(ref.ravel(), minlength=256)[:32] / ref.size)
    assert max(float(np.abs(a - b).sum()) for a in hists for b in hists) > 0.05, "every photo gives the same map"
    FIGURES.append(f"semantic yolo26n-sem {mode}: pixels agreeing (worst of {len(hists)} photos) {worst:.5f}")


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_depth_vs_ultralytics(dense, mode):
    from edgerun.runtime import DepthEstimator, open_model

    path = dense["depth"][mode]
    ref_model, ours = _yolo(path, "depth"), open_model(str(path))
    assert isinstance(ours, DepthEstimator)
    worst, maps = 0.0, []
    for parts in SHAPES + FOOD[1:2]:
        img_path = shared_file(*parts)
        ref = _np(_predict(ref_model, img_path).depth.data).astype(np.float64)
        got = ours.run(cv2.imread(str(img_path))).depth
        assert got.shape == ref.shape
        rel = float(np.median(np.abs(got - ref) / np.abs(ref)))
        worst = max(worst, rel)
        assert ref.max() / ref.min() > 1.05, f"{parts[-1]}: the reference depth is flat: the test could not fail"
        assert rel <= MAX_DEPTH_REL, f"{parts[-1]}: median relative depth error {rel:.4f}"
        maps.append(cv2.resize(np.log(ref).astype(np.float32), (64, 64), interpolation=cv2.INTER_AREA))
    # the random head's map is mostly its own spatial pattern; the photo still moves it (measured 0.0076)
    moved = max(float(np.abs(a - b).mean()) for a in maps for b in maps)
    assert moved > 0.003, f"every photo gives the same depth map (mean |log-depth difference| {moved:.4f})"
    FIGURES.append(f"depth yolo26n-depth {mode}: median relative error (worst of {len(maps)} photos) {worst:.2e}")


def test_cli_predict_json_depth_and_semantic(dense):
    """``edgerun predict --json``: the semantic class shares and the compact depth record (min/median/max)."""
    img = shared_file("images", "zidane.jpg")
    for task in ("semantic", "depth"):
        out = subprocess.run([sys.executable, "-m", "edgerun.runtime.cli", "predict", str(dense[task]["static"]),
                              str(img), "--json"], capture_output=True, text=True, timeout=600, check=True)
        rec = json.loads(out.stdout.strip().splitlines()[-1])
        if task == "depth":
            assert set(rec["depth"]) == {"min", "median", "max", "mean"} and rec["depth"]["max"] > rec["depth"]["min"]
        else:
            assert len(rec["classes"]) > 1 and abs(sum(c["fraction"] for c in rec["classes"]) - 1) < 1e-3


# ------------------------------------------------------------------------------------------ export gate
@pytest.mark.parametrize("task", ["classify", "semantic", "depth"])
def test_export_checkpoint_gate(dense, tmp_path, task):
    from edgerun.export.ultra import export_checkpoint, format_gate

    pt = shared_file(*CLS_PT) if task == "classify" else dense[task]["pt"]
    images = [str(shared_file(*p)) for p in SHAPES + FOOD[:1]]  # tall, wide, square + a food photo
    r = export_checkpoint(str(pt), str(tmp_path / f"{task}.onnx"), verify_images=images,
                          imgsz=None if task == "classify" else 640)
    gate = r["checkpoint_gate"]
    assert r["ok"] and gate["verified"] and gate["task"] == task, format_gate(gate)
    assert os.path.getsize(r["path"]) > 0
    FIGURES.append(f"export gate {task}: " + format_gate(gate).replace("\n", " | "))
