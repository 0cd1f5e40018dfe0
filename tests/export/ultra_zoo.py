"""Ultralytics models built from Ultralytics' own yamls, seeded with trained weights, exported by its exporter.

The export lane compares edgerun with ``YOLO(model.onnx).predict`` on every task x export mode. Random weights
alone prove little (their outputs barely depend on the image), so each model built here is seeded with every
trained layer whose name and shape match a trained model of the same family in ``../shared``:

- YOLOv8/YOLO11 heads: the shared ONNX files (``yolov8n_640_fp32dq``, ``yolov8n-seg_320_fp32dq``,
  ``yolo11n-pose_640_fp32``; the YOLO11n detector takes the pose model's backbone and box branch). Their
  initializers are fused conv+bn: the fused weight goes into ``conv.weight`` and the fused bias into an
  identity batch norm (weight 1, bias b, mean 0, var 1 - eps), so the model stays unfused (YOLO26's
  one-to-one and one-to-many branches both survive until the exporter picks one);
- YOLO26: the backbone of the YOLO26n-cls checkpoint ``torch/yolo26n-cls_food101_best.pt`` (BN kept as is).

Then only the class biases still random are raised, from one calibration pass on a real photo, until the
top-scoring anchors pass the 0.25 threshold, so every export finds objects. Exports never touch the repo: the
``Zoo`` writes into a folder it is given (a pytest tmp dir), one file per (model, nms, dynamic), built once.

API (stable; h24c's classify/semantic/depth tests use it too):

    zoo = Zoo(folder)                                  # the session fixture ``ultra_zoo`` (tests/conftest.py)
    path = zoo.export("yolo26n-seg", nms=False, dynamic=False)   # -> Path of the ONNX (cached)
    pt = zoo.checkpoint("yolo26n-seg")                 # -> Path of the seeded .pt (cached)
    zoo.report("yolo26n-seg")                          # -> {"seeded": n, "tensors": m, "raised": k, ...}
    register(ZooEntry(name, yaml, task, seed=..., calib=...))  # add a model (e.g. "yolo26n-cls")
    ref = ultra_predict(path, image_path)              # -> Objects from YOLO(path).predict
    ours = objects_of(result)                          # -> Objects from an edgerun result
    figures = compare(ref, ours)                       # -> dict of matched counts and worst deltas
"""
from __future__ import annotations

import ast
import datetime
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from helpers import iou_matrix, match, shared_dir

__all__ = ["ZooEntry", "Zoo", "ENTRIES", "register", "MODES", "Objects", "ultra_predict", "objects_of",
           "compare", "seed_from_onnx", "seed_from_checkpoint", "raise_class_biases", "IMGSZ"]

IMGSZ = 640
MODES = (None, False, True)  # Ultralytics' ``nms`` export argument: one-to-many raw, NMS-free, in-graph NMS
BN_EPS_DEFAULT = 1e-3


# ------------------------------------------------------------------------------------------ seeding
def _onnx_weights(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.name.startswith("model.")}


def seed_from_onnx(model, onnx_path: Path) -> tuple[int, set[str]]:
    """Copy an Ultralytics ONNX export's fused conv weights into an unfused ``model`` by name and shape.

    Returns (number of torch tensors written, names of the modules seeded). A ``Conv`` (conv + bn) named
    ``p`` takes ``p.conv.weight`` and ``p.conv.bias`` (the fused bias) as conv weight and identity-BN bias;
    a plain biased ``nn.Conv2d`` takes ``p.weight`` and ``p.bias`` directly."""
    import torch

    w = _onnx_weights(onnx_path)
    written, seeded = 0, set()
    with torch.no_grad():
        for name, mod in model.named_modules():
            conv, bn = getattr(mod, "conv", None), getattr(mod, "bn", None)
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                kw, kb = f"{name}.conv.weight", f"{name}.conv.bias"
                if kw in w and kb in w and tuple(conv.weight.shape) == w[kw].shape and w[kb].shape == (bn.num_features,):
                    conv.weight.copy_(torch.from_numpy(w[kw].copy()))
                    bn.weight.fill_(1.0)
                    bn.bias.copy_(torch.from_numpy(w[kb].copy()))
                    bn.running_mean.zero_()
                    bn.running_var.fill_(1.0 - bn.eps)
                    written += 5
                    seeded.add(name)
            elif type(mod) is torch.nn.Conv2d and mod.bias is not None and name not in seeded:
                kw, kb = f"{name}.weight", f"{name}.bias"
                if kw in w and kb in w and tuple(mod.weight.shape) == w[kw].shape and tuple(mod.bias.shape) == w[kb].shape:
                    mod.weight.copy_(torch.from_numpy(w[kw].copy()))
                    mod.bias.copy_(torch.from_numpy(w[kb].copy()))
                    written += 2
                    seeded.add(name)
    return written, seeded


def seed_from_checkpoint(model, pt_path: Path) -> tuple[int, set[str]]:
    """Copy every tensor of an Ultralytics checkpoint's (unfused) model whose name and shape match."""
    import torch

    ckpt = torch.load(str(pt_path), map_location="cpu", weights_only=False)
    src = (ckpt.get("ema") or ckpt["model"]).float().state_dict()
    state = model.state_dict()
    take = {k: v for k, v in src.items() if k in state and tuple(state[k].shape) == tuple(v.shape)}
    model.load_state_dict(take, strict=False)
    modules = {k.rsplit(".", 1)[0] for k in take}
    return len(take), {m[:-3] if m.endswith(".bn") or m.endswith(".conv") else m for m in modules}


def _class_convs(model) -> list:
    """The last conv of every class branch of a Detect-family head (one-to-many and one-to-one)."""
    head = model.model[-1]
    out = []
    for attr in ("cv3", "one2one_cv3"):
        branch = getattr(head, attr, None)
        if branch is not None:
            out += [seq[-1] for seq in branch]
    return out


def raise_class_biases(model, image_bgr: np.ndarray, seeded: set[str], *, top: int = 20,
                       target: float = 0.5, spread: float = 1.0, imgsz: int = IMGSZ) -> int:
    """Make the class convs no trained weight reached find objects on a real photo: one calibration pass,
    then (1) a conv whose logits barely vary over the anchors (a random head on random features: every
    anchor would tie) has its weights scaled so their standard deviation is ``spread``, (2) one bias
    shift for all of them puts the ``top``-th highest anchor-class score at ``target`` (one-to-many and
    one-to-one branches together). Returns how many convs were changed."""
    import torch

    names = {id(m): n for n, m in model.named_modules()}
    convs = [c for c in _class_convs(model) if names[id(c)] not in seeded]
    if not convs:
        return 0
    outs: dict[int, list] = {id(c): [] for c in convs}
    hooks = [c.register_forward_hook(lambda m, _i, o: outs[id(m)].append(o.detach())) for c in convs]
    model.eval()
    with torch.no_grad():
        model(_letterbox_tensor(image_bgr, imgsz))
    for h in hooks:
        h.remove()
    logits = []
    with torch.no_grad():
        for c in convs:
            o = outs[id(c)][0] - c.bias.view(1, -1, 1, 1)  # the weights' part of the logits
            std = float(o.std())
            gain = spread / std if 0 < std < spread else 1.0
            c.weight.mul_(gain)
            logits.append((o * gain + c.bias.view(1, -1, 1, 1)).flatten())
        allv = torch.cat(logits)
        kth = torch.topk(allv, min(top, allv.numel())).values[-1]
        shift = float(np.log(target / (1 - target)) - kth)
        for c in convs:
            c.bias.add_(shift)
    return len(convs)


def _letterbox_tensor(image_bgr: np.ndarray, size: int):
    import cv2
    import torch

    h, w = image_bgr.shape[:2]
    r = min(size / h, size / w)
    nh, nw = round(h * r), round(w * r)
    canvas = np.full((size, size, 3), 114, np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas[top:top + nh, left:left + nw] = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(canvas[:, :, ::-1].transpose(2, 0, 1).copy()).float()[None] / 255.0


# ------------------------------------------------------------------------------------------ the zoo
@dataclass(frozen=True)
class ZooEntry:
    """A model the zoo can build: Ultralytics yaml (scale letter in the name), task, what seeds it.

    ``seed``: (kind, path parts under ../shared) with kind "onnx" (fused ONNX initializers) or "pt"
    (an Ultralytics checkpoint); ``calib``: the photo (parts under ../shared) the class biases are
    calibrated on; ``names_from_seed``: take class names from the seed ONNX's metadata (same classes);
    ``nc``: class count (None: the yaml's)."""

    name: str
    yaml: str
    task: str
    seed: tuple[str, tuple[str, ...]] | None = None
    calib: tuple[str, ...] = ("images", "bus.jpg")
    names_from_seed: bool = False
    nc: int | None = None
    raise_biases: bool = True


ENTRIES: dict[str, ZooEntry] = {}


def register(entry: ZooEntry) -> None:
    """Add (or replace) a buildable model."""
    ENTRIES[entry.name] = entry


_V8 = ("onnx", ("models", "yolov8n_640_fp32dq.onnx"))
_V8SEG = ("onnx", ("models", "yolov8n-seg_320_fp32dq.onnx"))
_11POSE = ("onnx", ("models", "yolo11n-pose_640_fp32.onnx"))
_26CLS = ("pt", ("torch", "yolo26n-cls_food101_best.pt"))
_AERIAL = ("images-aerial", "aerial_courts_640.jpg")
for _e in (
    ZooEntry("yolov8n", "yolov8n.yaml", "detect", _V8, names_from_seed=True),
    ZooEntry("yolov8n-seg", "yolov8n-seg.yaml", "segment", _V8SEG, names_from_seed=True),
    ZooEntry("yolo11n", "yolo11n.yaml", "detect", _11POSE),  # backbone + box branch trained, class branch random
    ZooEntry("yolo11n-pose", "yolo11n-pose.yaml", "pose", _11POSE, names_from_seed=True, nc=1),
    ZooEntry("yolo11n-obb", "yolo11n-obb.yaml", "obb", _11POSE, calib=_AERIAL, nc=15),
    ZooEntry("yolo26n", "yolo26n.yaml", "detect", _26CLS),
    ZooEntry("yolo26n-seg", "yolo26n-seg.yaml", "segment", _26CLS),
    ZooEntry("yolo26n-pose", "yolo26n-pose.yaml", "pose", _26CLS, nc=1),
    ZooEntry("yolo26n-obb", "yolo26n-obb.yaml", "obb", _26CLS, calib=_AERIAL, nc=15),
):
    register(_e)


def mode_name(nms: bool | None) -> str:
    return {None: "raw", False: "nmsfree", True: "nms"}[nms]


class Zoo:
    """Builds, seeds and exports ``ENTRIES`` into ``folder``; every file is made once per Zoo (and reused
    when the folder already holds it, e.g. a developer's ``EDGERUN_ZOO_DIR``)."""

    def __init__(self, folder: str | os.PathLike, imgsz: int = IMGSZ, seed: int = 0):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.imgsz = imgsz
        self.seed = seed
        self.timings: dict[str, float] = {}  # seconds per built file (the CI cost)
        self._reports: dict[str, dict[str, Any]] = {}

    def checkpoint(self, name: str) -> Path:
        """The seeded model saved as an Ultralytics checkpoint (``YOLO(path)`` loads it)."""
        path = self.folder / f"{name}.pt"
        if not path.exists():
            t0 = time.perf_counter()
            model, report = build(ENTRIES[name], self.seed, self.imgsz)
            _save_checkpoint(model, ENTRIES[name], path, self.imgsz)
            self._reports[name] = report
            self.timings[path.name] = time.perf_counter() - t0
        return path

    def report(self, name: str) -> dict[str, Any]:
        """What seeding did for ``name`` (built in this session): tensors seeded / total, convs raised."""
        self.checkpoint(name)
        return self._reports.get(name, {})

    def export(self, name: str, nms: bool | None = None, dynamic: bool = False) -> Path:
        """The ONNX export of ``name`` with Ultralytics' ``nms`` and ``dynamic`` settings (imgsz of the zoo)."""
        final = self.folder / f"{name}_{mode_name(nms)}{'_dyn' if dynamic else ''}.onnx"
        if final.exists():
            return final
        pt = self.checkpoint(name)
        return self.export_checkpoint(pt, final, nms=nms, dynamic=dynamic)

    def export_checkpoint(self, pt: str | os.PathLike, final: str | os.PathLike, *, nms: bool | None = None,
                          dynamic: bool = False, imgsz: int | None = None) -> Path:
        """Export any checkpoint (e.g. ../shared's trained ``yolo11n-pose.pt``) into ``final`` (cached)."""
        from ultralytics import YOLO

        final = Path(final)
        if final.exists():
            return final
        work = self.folder / f"work_{final.stem}"
        work.mkdir(exist_ok=True)
        local = work / Path(pt).name
        shutil.copyfile(pt, local)
        t0 = time.perf_counter()
        out = YOLO(str(local)).export(format="onnx", imgsz=imgsz or self.imgsz, nms=nms, dynamic=dynamic,
                                      device="cpu", verbose=False)
        os.replace(out, final)
        shutil.rmtree(work, ignore_errors=True)
        self.timings[final.name] = time.perf_counter() - t0
        return final


def build(entry: ZooEntry, seed: int = 0, imgsz: int = IMGSZ):
    """The model of ``entry`` from its yaml (torch seeded with ``seed``), trained layers copied in, the
    still-random class biases raised. Returns (model, report)."""
    import cv2
    import torch
    from ultralytics.nn import tasks

    kinds = {"detect": tasks.DetectionModel, "segment": tasks.SegmentationModel, "pose": tasks.PoseModel,
             "obb": tasks.OBBModel, "classify": tasks.ClassificationModel,
             "semantic": tasks.SemanticSegmentationModel, "depth": tasks.DepthModel}
    torch.manual_seed(seed)
    kw = {"nc": entry.nc} if entry.nc else {}
    model = kinds[entry.task](entry.yaml, verbose=False, **kw).float().eval()
    total = len(model.state_dict())
    seeded, modules = 0, set()
    names = None
    if entry.seed is not None:
        kind, parts = entry.seed
        src = shared_dir().joinpath(*parts)
        if not src.exists():
            import pytest
            pytest.skip(f"{src} is absent: the zoo seeds {entry.name} from it")
        if kind == "onnx":
            seeded, modules = seed_from_onnx(model, src)
            if entry.names_from_seed:
                names = _onnx_names(src)
        else:
            seeded, modules = seed_from_checkpoint(model, src)
    if names is not None and len(names) == len(model.names):
        model.names = names
    raised = 0
    if entry.raise_biases:
        image = cv2.imread(str(shared_dir().joinpath(*entry.calib)))
        raised = raise_class_biases(model, image, modules, imgsz=imgsz)
    return model, {"seeded": seeded, "tensors": total, "raised": raised, "modules_seeded": len(modules)}


def _onnx_names(path: Path) -> dict[int, str] | None:
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return ast.literal_eval(meta["names"]) if "names" in meta else None


def _save_checkpoint(model, entry: ZooEntry, path: Path, imgsz: int) -> None:
    import torch
    import ultralytics

    args = {"task": entry.task, "model": entry.yaml, "imgsz": imgsz}
    model.args = args
    torch.save({"date": datetime.datetime.now().isoformat(), "version": ultralytics.__version__,
                "license": "AGPL-3.0 License (https://ultralytics.com/license)", "model": model,
                "train_args": args, "epoch": -1}, str(path))


# ------------------------------------------------------------------------------------------ comparing
@dataclass
class Objects:
    """One image's objects in source pixels, from either side: ``xyxy`` (N, 4) (axis-aligned bounds for
    OBB), ``conf`` (N,), ``cls`` (N,), optional ``masks`` (N, H, W) bool, ``kpts`` (N, K, 2),
    ``kpt_conf`` (N, K), ``corners`` (N, 4, 2), ``xywhr`` (N, 5)."""

    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray
    masks: np.ndarray | None = None
    kpts: np.ndarray | None = None
    kpt_conf: np.ndarray | None = None
    corners: np.ndarray | None = None
    xywhr: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.conf)


def ultra_predict(onnx_path: str | os.PathLike, image: str | os.PathLike, *, conf: float = 0.25,
                  iou: float = 0.7, imgsz: int | None = None) -> Objects:
    """``YOLO(onnx_path).predict(image)`` on CPU (the model's own imgsz unless given), as Objects;
    masks mapped to the image as Ultralytics' ``scale_masks(...) > 0.5``."""
    from ultralytics import YOLO
    from ultralytics.utils import ops

    kw = {"imgsz": imgsz} if imgsz else {}
    r = YOLO(str(onnx_path)).predict(str(image), conf=conf, iou=iou, device="cpu", verbose=False, **kw)[0]
    if r.obb is not None:
        o = r.obb
        return Objects(o.xyxy.numpy().astype(np.float64), o.conf.numpy().astype(np.float64),
                       o.cls.numpy().astype(np.int64), corners=o.xyxyxyxy.numpy().astype(np.float64),
                       xywhr=o.xywhr.numpy().astype(np.float64))
    b = r.boxes
    out = Objects(b.xyxy.numpy().astype(np.float64), b.conf.numpy().astype(np.float64), b.cls.numpy().astype(np.int64))
    if r.masks is not None:
        h, w = r.orig_shape
        out.masks = (ops.scale_masks(r.masks.data[None], (h, w))[0] > 0.5).numpy()
    if r.keypoints is not None:
        k = r.keypoints.data.numpy().astype(np.float64)
        out.kpts, out.kpt_conf = k[..., :2], (k[..., 2] if k.shape[-1] == 3 else np.ones(k.shape[:2]))
    return out


def objects_of(result) -> Objects:
    """An edgerun ``Detections`` as Objects."""
    d = result.data
    return Objects(np.asarray(result.xyxy, np.float64), np.asarray(result.confidence, np.float64),
                   np.asarray(result.class_id, np.int64),
                   masks=None if result.mask is None else np.asarray(result.mask, bool),
                   kpts=d.get("keypoints"), kpt_conf=d.get("keypoint_confidence"),
                   corners=None if "xyxyxyxy" in d and d["xyxyxyxy"] is None else d.get("xyxyxyxy"),
                   xywhr=d.get("xywhr"))


def objects_of_records(records: list[dict]) -> Objects:
    """``edgerun predict --json`` detections of one frame as Objects (boxes, classes, corners, keypoints)."""
    n = len(records)
    xyxy = np.array([r["xyxy"] for r in records], np.float64).reshape(n, 4)
    out = Objects(xyxy, np.array([r["confidence"] for r in records], np.float64),
                  np.array([r["class_id"] for r in records], np.int64))
    if n and "xyxyxyxy" in records[0]:
        out.corners = np.array([r["xyxyxyxy"] for r in records], np.float64).reshape(n, 4, 2)
    if n and "keypoints" in records[0]:
        out.kpts = np.array([r["keypoints"] for r in records], np.float64)
    return out


def _corner_px(a: np.ndarray, b: np.ndarray) -> float:
    """Largest corner distance between two rotated boxes given as (4, 2) corners, over the four cyclic
    orders (the same rectangle may start at another corner)."""
    return min(float(np.abs(np.roll(a, s, 0) - b).max()) for s in range(4))


def _match_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of the axis-aligned boxes; for a degenerate box (x2 <= x1 or y2 <= y1, which a random YOLO26 head
    emits and both sides keep) 1 when every coordinate is within 0.5 px, else 0."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    iou = iou_matrix(a, b)
    flat_a = ((a[:, 2] <= a[:, 0]) | (a[:, 3] <= a[:, 1]))[:, None]
    flat_b = ((b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1]))[None, :]
    close = np.abs(a[:, None, :] - b[None, :, :]).max(-1) <= 0.5
    return np.where(flat_a | flat_b, close.astype(np.float64), iou)


def compare(ref: Objects, ours: Objects, iou_min: float = 0.95, *, masks: bool = True) -> dict[str, Any]:
    """Match ``ours`` to ``ref`` one to one (same class, highest IoU of the axis-aligned boxes first) and
    return the figures of issue 24: ``ref``/``ours``/``matched`` counts, ``max_iou_deficit`` (1 - worst
    matched IoU), ``max_conf_diff``, ``max_corner_px`` (OBB), ``max_kpt_px`` (every keypoint, as Ultralytics
    returns them: clipped to the image), ``max_kpt_conf_diff``, ``min_mask_iou`` (``masks=False``: not
    compared, e.g. for ``--json`` records, which carry no masks)."""
    iou = _match_iou(ours.xyxy, ref.xyxy)
    pairs, _, _ = match(ours.xyxy, ours.conf, ours.cls, ref.xyxy, ref.conf, ref.cls, iou_min, iou=iou)
    pairs = [(i, j) for i, j, _ in pairs]
    f: dict[str, Any] = {"ref": len(ref), "ours": len(ours), "matched": len(pairs), "max_iou_deficit": 0.0,
                         "max_conf_diff": 0.0}
    for i, j in pairs:
        f["max_iou_deficit"] = max(f["max_iou_deficit"], 1.0 - float(iou[i, j]))
        f["max_conf_diff"] = max(f["max_conf_diff"], abs(float(ours.conf[i]) - float(ref.conf[j])))
        if ref.corners is not None:
            px = _corner_px(np.asarray(ours.corners[i], np.float64), ref.corners[j]) if ours.corners is not None else np.inf
            f["max_corner_px"] = max(f.get("max_corner_px", 0.0), px)
        if ref.kpts is not None:
            px = float(np.abs(np.asarray(ours.kpts[i], np.float64) - ref.kpts[j]).max()) if ours.kpts is not None else np.inf
            f["max_kpt_px"] = max(f.get("max_kpt_px", 0.0), px)
            if ours.kpt_conf is not None and ref.kpt_conf is not None:
                d = float(np.abs(np.asarray(ours.kpt_conf[i], np.float64) - ref.kpt_conf[j]).max())
                f["max_kpt_conf_diff"] = max(f.get("max_kpt_conf_diff", 0.0), d)
        if masks and ref.masks is not None:
            if ours.masks is None:
                m_iou = 0.0
            else:
                a, b = ours.masks[i], ref.masks[j]
                union = np.logical_or(a, b).sum()
                m_iou = float(np.logical_and(a, b).sum() / union) if union else 1.0
            f["min_mask_iou"] = min(f.get("min_mask_iou", 1.0), m_iou)
    return f


def assert_same(figures: dict[str, Any], *, min_objects: int = 1, what: str = "") -> None:
    """Issue 24's bar: every object matched both ways (class, IoU >= 0.95), confidence within 0.01,
    OBB corners and keypoints within 1 px, masks IoU >= 0.95, and at least ``min_objects`` objects."""
    f = figures
    assert f["ref"] >= min_objects, f"{what}: Ultralytics found {f['ref']} objects, the test needs >= {min_objects}: {f}"
    assert f["matched"] == f["ref"] == f["ours"], f"{what}: objects differ: {f}"
    assert f["max_conf_diff"] <= 0.01, f"{what}: {f}"
    assert f.get("max_corner_px", 0.0) <= 1.0, f"{what}: {f}"
    assert f.get("max_kpt_px", 0.0) <= 1.0, f"{what}: {f}"
    assert f.get("min_mask_iou", 1.0) >= 0.95, f"{what}: {f}"
