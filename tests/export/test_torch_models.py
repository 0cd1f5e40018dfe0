"""Real torch architectures through export_module: a torchvision-style MobileNetV2 (dynamic batch,
opened by edgerun's Classifier) and the trained MTCNN cascade from ../shared/torch (finds the face in
astronaut.png). Also the ``edgerun export CHECKPOINT.pt --arch`` path for torch checkpoints."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import shared_file

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                reason="torch is not installed (pip install torch==2.13.0 --index-url "
                                       "https://download.pytorch.org/whl/cpu)")

FACE = (179, 63, 270, 174)  # astronaut.png, per ../shared/MANIFEST.md
ATOL = 1e-4  # fp32 torch vs ORT; observed ~1e-6 on these nets


# ----- MobileNetV2 (torchvision's architecture, compact width, no torchvision dependency) -----

def make_mobilenet_v2(num_classes: int = 10, width_mult: float = 0.5):
    import torch
    from torch import nn

    def cbr(cin, cout, k=3, s=1, groups=1):
        return nn.Sequential(nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=groups, bias=False),
                             nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))

    def div8(v):
        new = max(8, int(v + 4) // 8 * 8)
        return new + 8 if new < 0.9 * v else new

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, expand):
            super().__init__()
            hidden = int(round(cin * expand))
            self.use_res = stride == 1 and cin == cout
            layers = [cbr(cin, hidden, 1)] if expand != 1 else []
            layers += [cbr(hidden, hidden, 3, stride, groups=hidden),
                       nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            cin, last = div8(32 * width_mult), div8(1280 * max(1.0, width_mult))
            layers = [cbr(3, cin, 3, 2)]
            for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                               (6, 160, 3, 2), (6, 320, 1, 1)]:
                for i in range(n):
                    layers.append(InvertedResidual(cin, div8(c * width_mult), s if i == 0 else 1, t))
                    cin = div8(c * width_mult)
            layers.append(cbr(cin, last, 1))
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

        def forward(self, x):
            x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
            return self.classifier(torch.flatten(x, 1))

    torch.manual_seed(0)
    net = MobileNetV2()
    for m in net.modules():  # non-trivial BN statistics, so folding/export errors would show
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_mobilenet_v2_dynamic_batch_classifier(tmp_path):
    import torch

    from edgerun.export.torch_export import export_module
    from edgerun.runtime import open_model
    from edgerun.runtime.tasks.classifier import Classifier
    from edgerun.runtime.session import Session
    from edgerun.runtime.spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec

    net = make_mobilenet_v2()
    spec = ModelSpec(task="classify", head="classify", resize="center_crop", resize_short=128,
                     input_name="input", input_size=(112, 112), dynamic_batch=True, num_classes=10,
                     names=tuple(f"c{i}" for i in range(10)), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                     softmax=True)
    rng = np.random.default_rng(1)
    inputs = [rng.random((n, 3, 112, 112), dtype=np.float32) for n in (1, 3)]
    out = str(tmp_path / "mnv2.onnx")
    report = export_module(net, out, spec, (1, 3, 112, 112), dynamic=True, output_names=("logits",),
                           verify_inputs=inputs, atol=ATOL, rtol=1e-4)
    assert report["ok"] and report["max_abs_error"] < ATOL, report
    assert report["input_shapes"][0][0] is None  # symbolic batch

    session = Session(out, threads=1)  # batch 1 and 3 against torch, explicitly
    for x in inputs:
        got = session.run({"input": x})[0]
        with torch.no_grad():
            want = net(torch.from_numpy(x)).numpy()
        assert got.shape == (x.shape[0], 10)
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=1e-4)

    clf = open_model(out)
    assert isinstance(clf, Classifier) and set(clf.spec.guessed) <= {"output_names"}
    assert clf.spec.resize == "center_crop" and clf.spec.resize_short == 128
    frame = np.random.default_rng(2).integers(0, 256, (300, 400, 3), dtype=np.uint8)  # non-square
    tensor, _ = clf.preprocess(frame)
    with torch.no_grad():
        want = torch.softmax(net(torch.from_numpy(np.ascontiguousarray(tensor, np.float32))), 1)[0].numpy()
    res = Classifier.from_path(out).classify(frame)
    np.testing.assert_allclose(res.probabilities, want, atol=1e-5)
    assert int(res.class_id[0]) == int(np.argmax(want))


# ----- MTCNN -----

def _weights(name: str) -> str:
    return str(shared_file("torch", f"{name}.pt"))


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _astronaut_rgb() -> np.ndarray:
    import cv2
    return np.ascontiguousarray(cv2.imread(str(shared_file("images", "astronaut.png")))[:, :, ::-1])


def _mtcnn_spec(size, **kw):
    from edgerun.export.mtcnn import MEAN, SCALE
    from edgerun.runtime.spec import ModelSpec
    # ModelSpec has no MTCNN head: the metadata records the input convention; export/mtcnn.py decodes.
    return ModelSpec(task="face", input_name="input", input_size=size, scale=SCALE, mean=(MEAN,) * 3,
                     resize="stretch", **kw)


def _torch_run(net):
    import torch

    def run(x):
        with torch.no_grad():
            return [o.numpy() for o in net(torch.from_numpy(x))]
    return run


def test_mtcnn_flatten_order_is_caffe():
    """(N, W, H, C) flattening finds exactly the one face; (N, H, W, C) runs but does not."""
    from edgerun.export import mtcnn

    rgb, pnet = _astronaut_rgb(), _torch_run(mtcnn.make_pnet(_weights("pnet")))
    results = {}
    for order in ((0, 3, 2, 1), (0, 2, 3, 1)):
        rnet = _torch_run(mtcnn.make_rnet(_weights("rnet"), order))
        onet = _torch_run(mtcnn.make_onet(_weights("onet"), order))
        boxes, _ = mtcnn.detect_faces(rgb, pnet, rnet, onet)
        results[order] = len(boxes) == 1 and _iou(boxes[0], FACE) >= 0.8
    assert results == {(0, 3, 2, 1): True, (0, 2, 3, 1): False}


def test_mtcnn_export_and_onnx_cascade(tmp_path):
    import onnxruntime as ort

    from edgerun.export import mtcnn
    from edgerun.export.torch_export import export_module

    rng = np.random.default_rng(0)
    rgb = _astronaut_rgb()
    face = rgb[FACE[1]:FACE[3], FACE[0]:FACE[2]].astype(np.float32)
    sessions = {}
    # PNet: dynamic H/W, verified at three sizes (the first is traced)
    pnet_inputs = [rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32) for h, w in ((64, 80), (37, 51), (12, 12))]
    r = export_module(mtcnn.make_pnet(_weights("pnet")), str(tmp_path / "pnet.onnx"),
                      _mtcnn_spec((64, 80), dynamic_hw=True), (1, 3, 64, 80), output_names=("prob", "reg"),
                      verify_inputs=pnet_inputs, atol=ATOL, dynamic_axes={
                          "input": {2: "height", 3: "width"}, "prob": {2: "oh", 3: "ow"}, "reg": {2: "oh", 3: "ow"}})
    assert r["ok"] and tuple(r["input_shapes"][0][2:]) == (None, None), r
    for name, size, outs in (("rnet", 24, ("prob", "reg")), ("onet", 48, ("prob", "reg", "landmarks"))):
        import cv2
        real = ((cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA) - 127.5) * mtcnn.SCALE)
        inputs = [real.transpose(2, 0, 1)[None].copy(),
                  rng.uniform(-1, 1, (5, 3, size, size)).astype(np.float32)]
        make = getattr(mtcnn, f"make_{name}")
        r = export_module(make(_weights(name)), str(tmp_path / f"{name}.onnx"),
                          _mtcnn_spec((size, size), dynamic_batch=True), (1, 3, size, size), dynamic=True,
                          output_names=outs, verify_inputs=inputs, atol=ATOL)
        assert r["ok"], r
    for name in ("pnet", "rnet", "onet"):
        s = ort.InferenceSession(str(tmp_path / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        sessions[name] = (lambda sess: lambda x: sess.run(None, {"input": x}))(s)
    boxes, scores = mtcnn.detect_faces(rgb, sessions["pnet"], sessions["rnet"], sessions["onet"])
    assert len(boxes) >= 1 and scores[0] > 0.9
    assert _iou(boxes[0], FACE) >= 0.5, (boxes, scores)


# ----- `edgerun export CHECKPOINT.pt --arch module:callable` -----

ARCH_MODULE = textwrap.dedent("""
    import torch

    from edgerun.export import mtcnn


    def make_onet():
        return mtcnn.make_onet()


    def make_pnet():
        return mtcnn.make_pnet()


    class Weird(torch.nn.Module):  # no parameters: the state_dict still fits ONet's
        def forward(self, x):
            return torch.linalg.eigvals(x[:, :, None] * x[:, None, :]).real


    def make_bad():
        net = mtcnn.make_onet()
        net.add_module("weird", Weird())
        body = net.forward
        net.forward = lambda x: net.weird(body(x)[0])
        return net


    class Meta:  # any non-tensor object makes torch.load(weights_only=True) refuse the file
        pass
""")


@pytest.fixture
def arch_dir(tmp_path, monkeypatch):
    (tmp_path / "tests_mod.py").write_text(ARCH_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _cli(cwd, *args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "edgerun.runtime.cli", "export", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_exports_torch_checkpoint(arch_dir):
    import onnxruntime as ort
    import torch

    from edgerun.export import mtcnn
    from edgerun.runtime.session import Session

    out = arch_dir / "onet.onnx"
    p = _cli(arch_dir, _weights("onet"), "--arch", "tests_mod:make_onet", "-o", str(out), "--imgsz", "48",
             "48", "--dynamic", "--opset", "17", "--task", "face")
    assert p.returncode == 0, p.stderr
    assert "written" in p.stdout
    s = Session(str(out), threads=1)
    assert s.inputs[0].shape[0] is None and tuple(s.inputs[0].shape[1:]) == (3, 48, 48)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 48, 48)).astype(np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    with torch.no_grad():
        want = mtcnn.make_onet(_weights("onet"))(torch.from_numpy(x))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), atol=ATOL)


def test_cli_refuses_pickled_checkpoint_unless_trusted(arch_dir):
    import torch
    import tests_mod

    ckpt = arch_dir / "full.pt"
    torch.save({"state_dict": torch.load(_weights("onet"), weights_only=True), "meta": tests_mod.Meta()}, ckpt)
    args = [str(ckpt), "--arch", "tests_mod:make_onet", "-o", str(arch_dir / "o.onnx"), "--imgsz", "48", "48"]
    p = _cli(arch_dir, *args)
    assert p.returncode == 2 and not (arch_dir / "o.onnx").exists()
    assert "--trust-checkpoint" in p.stderr and "arbitrary code" in p.stderr, p.stderr
    p = _cli(arch_dir, *args, "--trust-checkpoint")
    assert p.returncode == 0, p.stderr
    assert (arch_dir / "o.onnx").exists()


def test_cli_clear_errors(arch_dir):
    import torch

    not_sd = arch_dir / "hparams.pt"
    torch.save({"epoch": 3, "lr": 0.1}, not_sd)
    out = str(arch_dir / "x.onnx")
    p = _cli(arch_dir, str(not_sd), "--arch", "tests_mod:make_onet", "-o", out, "--imgsz", "48")
    assert p.returncode == 2 and "not a state_dict" in p.stderr and "Traceback" not in p.stderr, p.stderr

    p = _cli(arch_dir, _weights("onet"), "--arch", "tests_mod:make_pnet", "-o", out, "--imgsz", "48")
    assert p.returncode == 2 and "does not fit" in p.stderr and "conv4_1" in p.stderr, p.stderr

    p = _cli(arch_dir, _weights("onet"), "--arch", "tests_mod:make_bad", "-o", out, "--imgsz", "48")
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "aten::linalg_eigvals" in p.stderr and "'weird' (Weird)" in p.stderr, p.stderr

    p = _cli(arch_dir, _weights("onet"), "--arch", "tests_mod:nope", "-o", out, "--imgsz", "48")
    assert p.returncode == 2 and "nope" in p.stderr, p.stderr
