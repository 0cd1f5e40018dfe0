"""Train and export the bundled demo detector (shapes on cluttered backgrounds).

    python -m edgerun.export.train_demo --out runtime/data/demo.onnx

A tiny anchor-free detector: a 9-conv backbone, heads at strides 8 and 16, one box (distances to
the four sides, softplus * stride) and C class logits per cell. Assignment: cells inside a box and
within 1.5 strides of its centre, on the level(s) its size suits; class targets are the IoU of the
predicted box (quality-aware, so NMS keeps the best box); GIoU box loss. The exported graph
decodes to Ultralytics v8's output (1, 4+C, N): cx, cy, w, h in input pixels, then sigmoid class
scores, so edgerun's "yolov8" decode and NMS read it. torch is imported inside functions only.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import numpy as np

from edgerun.runtime.demo import CLASS_NAMES
from edgerun.runtime.spec import ModelSpec

from .demo_data import EVAL_SEED_BASE, evaluate_map50, reference_detect, scene_batch

__all__ = ["build_model", "train", "demo_spec", "main"]

INPUT_SIZE = (320, 320)
STRIDES = (8, 16)
LEVEL_SIZES = {8: (0.0, 64.0), 16: (32.0, 1e9)}  # box long side (input px) each level learns


def build_model(num_classes: int = len(CLASS_NAMES), input_size: tuple[int, int] = INPUT_SIZE) -> Any:
    """The demo detector as a torch module: forward(x) -> (B, 4+C, N) decoded, yolov8 layout."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dilation, dilation=dilation, bias=False),
                             nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    class TinyDetector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.nc = num_classes
            self.p8 = nn.Sequential(conv(3, 16, 2), conv(16, 24, 2), conv(24, 24), conv(24, 48, 2),
                                    conv(48, 48))
            self.p16 = nn.Sequential(conv(48, 64, 2), conv(64, 64), conv(64, 64, dilation=2))
            self.lateral = nn.Conv2d(64, 48, 1)
            self.head8 = nn.Sequential(conv(48, 48), nn.Conv2d(48, 4 + num_classes, 1))
            self.head16 = nn.Sequential(conv(64, 48), nn.Conv2d(48, 4 + num_classes, 1))
            centres, strides = _grid(input_size)
            self.register_buffer("centres", torch.from_numpy(centres))  # (2, N)
            self.register_buffer("strides", torch.from_numpy(strides))  # (1, N)
            for head in (self.head8, self.head16):  # prior: few cells hold an object
                nn.init.constant_(head[-1].bias[4:], -math.log((1 - 0.01) / 0.01))

        def raw(self, x: torch.Tensor) -> torch.Tensor:
            """(B, 4+C, N): side distances (pre-softplus) and class logits."""
            f8 = self.p8(x)
            f16 = self.p16(f8)
            f8 = f8 + F.interpolate(self.lateral(f16), scale_factor=2.0, mode="nearest")
            return torch.cat([self.head8(f8).flatten(2), self.head16(f16).flatten(2)], dim=2)

        def boxes(self, raw: torch.Tensor) -> torch.Tensor:
            """(B, 4, N) xyxy in input pixels."""
            ltrb = F.softplus(raw[:, :4]) * self.strides
            return torch.cat([self.centres - ltrb[:, :2], self.centres + ltrb[:, 2:]], dim=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raw = self.raw(x)
            xyxy = self.boxes(raw)
            cxcy = (xyxy[:, :2] + xyxy[:, 2:]) * 0.5
            wh = xyxy[:, 2:] - xyxy[:, :2]
            return torch.cat([cxcy, wh, torch.sigmoid(raw[:, 4:])], dim=1)

    return TinyDetector()


def _grid(input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres (2, N) and strides (1, N) float32, level by level, row-major."""
    centres, strides = [], []
    for s in STRIDES:
        ys, xs = np.mgrid[0:input_size[0] // s, 0:input_size[1] // s]
        centres.append(np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5]) * s)
        strides.append(np.full(xs.size, s))
    return np.concatenate(centres, 1).astype(np.float32), np.concatenate(strides)[None].astype(np.float32)


# -- targets and loss -----------------------------------------------------------------------------
def assign(gt_xyxy: Any, centres: Any, strides: Any) -> tuple[Any, Any]:
    """Per cell, the index of its ground-truth box, or -1. Smaller boxes win shared cells."""
    import torch

    n = centres.shape[1]
    if len(gt_xyxy) == 0:
        return torch.full((n,), -1, dtype=torch.long), torch.zeros(n, dtype=torch.bool)
    cx, cy, s = centres[0][None], centres[1][None], strides[0][None]  # (1, N)
    x1, y1, x2, y2 = (gt_xyxy[:, i:i + 1] for i in range(4))  # (G, 1)
    gcx, gcy = (x1 + x2) / 2, (y1 + y2) / 2
    size = torch.maximum(x2 - x1, y2 - y1)
    level_ok = torch.zeros_like(cx, dtype=torch.bool).expand(len(gt_xyxy), n).clone()
    for stride, (lo, hi) in LEVEL_SIZES.items():
        level_ok |= (s == stride) & (size >= lo) & (size <= hi)
    inside = (cx > x1) & (cx < x2) & (cy > y1) & (cy < y2)
    near = ((cx - gcx).abs() <= 1.5 * s) & ((cy - gcy).abs() <= 1.5 * s)
    cand = level_ok & inside & near
    dist = torch.where(level_ok, (cx - gcx) ** 2 + (cy - gcy) ** 2, torch.full_like(cx, 1e12))
    nearest = dist.argmin(dim=1)  # every box gets at least its nearest allowed cell
    cand[torch.arange(len(gt_xyxy)), nearest] = True
    area = ((x2 - x1) * (y2 - y1)).expand_as(cand)
    cost = torch.where(cand, area, torch.full_like(area, float("inf")))
    best, index = cost.min(dim=0)
    positive = torch.isfinite(best)
    return torch.where(positive, index, torch.full_like(index, -1)), positive


def _giou(a: Any, b: Any) -> tuple[Any, Any]:
    """IoU and GIoU of matched xyxy rows (K, 4)."""
    import torch

    lt, rb = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    union = (a[:, 2:] - a[:, :2]).prod(1) + (b[:, 2:] - b[:, :2]).prod(1) - inter
    iou = inter / union.clamp(min=1e-6)
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).prod(1)
    return iou, iou - (hull - union) / hull.clamp(min=1e-6)


def detection_loss(model: Any, raw: Any, gt_boxes: list, gt_classes: list) -> tuple[Any, dict]:
    """GIoU box loss on positives + BCE with IoU-valued class targets over all cells."""
    import torch
    from torch.nn import functional as F

    xyxy = model.boxes(raw).transpose(1, 2)  # (B, N, 4)
    logits = raw[:, 4:].transpose(1, 2)  # (B, N, C)
    target = torch.zeros_like(logits)
    box_terms, n_pos = [], 0
    for b, (gt, cls) in enumerate(zip(gt_boxes, gt_classes)):
        gt = torch.from_numpy(gt)
        index, positive = assign(gt, model.centres, model.strides)
        if not positive.any():
            continue
        matched = gt[index[positive]]
        iou, giou = _giou(xyxy[b, positive], matched)
        box_terms.append(1.0 - giou)
        target[b, positive, torch.from_numpy(cls)[index[positive]]] = iou.detach().clamp(min=0.05)
        n_pos += int(positive.sum())
    n = max(n_pos, 1)
    box = torch.cat(box_terms).sum() / n if box_terms else xyxy.sum() * 0
    cls = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / n
    return cls + 2.0 * box, {"cls": float(cls.detach()), "box": float(box.detach()), "pos": n_pos}


# -- training -------------------------------------------------------------------------------------
def _log(message: str) -> None:
    print(message, flush=True)


class _ReplayPool:
    """Recent scenes, replayed flipped/rotated (exact box transforms) to stretch the data budget."""

    def __init__(self, capacity: int, rng: np.random.Generator) -> None:
        self.capacity, self.rng, self.items = capacity, rng, []

    def add(self, images: np.ndarray, boxes: list, classes: list) -> None:
        for item in zip(np.round(images * 255).astype(np.uint8), boxes, classes):
            if len(self.items) < self.capacity:
                self.items.append(item)
            else:
                self.items[int(self.rng.integers(self.capacity))] = item

    def sample(self, n: int) -> tuple[np.ndarray, list, list]:
        picks = [self.items[int(i)] for i in self.rng.integers(len(self.items), size=n)]
        out = [_d4(im, b, int(self.rng.integers(8))) for im, b, _ in picks]
        return (np.stack([o[0] for o in out]).astype(np.float32) * np.float32(1 / 255),
                [o[1] for o in out], [p[2] for p in picks])


def _d4(image: np.ndarray, xyxy: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One of the 8 flips/rotations of a square CHW image, with its boxes."""
    size = image.shape[2]
    b = xyxy.copy()
    if k & 1:  # horizontal flip
        image, b = image[:, :, ::-1], np.stack([size - b[:, 2], b[:, 1], size - b[:, 0], b[:, 3]], 1)
    if k & 2:  # vertical flip
        image, b = image[:, ::-1], np.stack([b[:, 0], size - b[:, 3], b[:, 2], size - b[:, 1]], 1)
    if k & 4:  # transpose
        image, b = image.transpose(0, 2, 1), b[:, [1, 0, 3, 2]]
    return np.ascontiguousarray(image), np.ascontiguousarray(b, np.float32)


def _batches(steps: int, batch: int, fresh: int, seed: int):
    """Per step: ``fresh`` new scenes plus replayed ones (seeds stay below ``EVAL_SEED_BASE``)."""
    pool = _ReplayPool(512, np.random.default_rng(seed))
    next_seed = seed * steps * fresh
    if next_seed + steps * fresh > EVAL_SEED_BASE:
        raise ValueError("training seeds would overlap the evaluation seeds; lower steps*fresh or seed")
    for _ in range(steps):
        images, boxes, classes = scene_batch(range(next_seed, next_seed + fresh), INPUT_SIZE)
        next_seed += fresh
        pool.add(images, boxes, classes)
        if batch > fresh:
            more = pool.sample(batch - fresh)
            images, boxes, classes = np.concatenate([images, more[0]]), boxes + more[1], classes + more[2]
        yield images, boxes, classes


def train(steps: int = 1300, batch: int = 16, lr: float = 4e-3, seed: int = 0, threads: int = 1,
          fresh: int = 8, log_every: int = 100, log: Any = _log) -> Any:
    """Train on ``fresh`` new scenes + replayed ones per step; returns the eval-mode model."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = build_model()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    warmup = max(1, min(200, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    model.train()
    t0 = time.perf_counter()
    for step, (images, boxes, classes) in enumerate(_batches(steps, batch, min(fresh, batch), seed)):
        loss, parts = detection_loss(model, model.raw(torch.from_numpy(images)), boxes, classes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()
        if log and (step % log_every == 0 or step == steps - 1):
            log(f"step {step:5d}/{steps} loss {float(loss.detach()):.3f} cls {parts['cls']:.3f} "
                f"box {parts['box']:.3f} pos {parts['pos']} lr {sched.get_last_lr()[0]:.2e} "
                f"{time.perf_counter() - t0:.0f}s")
    return model.eval()


def demo_spec() -> ModelSpec:
    """edgerun's metadata for the demo model."""
    import onnx
    import torch

    return ModelSpec(task="detect", head="yolov8", input_size=INPUT_SIZE, names=CLASS_NAMES,
                     num_classes=len(CLASS_NAMES), strides=STRIDES, stride=max(STRIDES), input_name="images",
                     source={"framework": "torch", "torch": torch.__version__, "onnx": onnx.__version__,
                             "trainer": "edgerun.export.train_demo",
                             "data": "edgerun.runtime.demo.make_scene (synthetic)"})


def export_and_score(model: Any, out: str, eval_scenes: int = 100) -> dict:
    """Export with verification, then mAP50 of the ONNX file on fresh scenes (ORT + numpy NMS)."""
    import onnxruntime as ort

    from .torch_export import export_module

    report = export_module(model, out, demo_spec(), (1, 3, *INPUT_SIZE), opset=17)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(out, opts, providers=["CPUExecutionProvider"])
    run = lambda x: sess.run(None, {"images": x})[0]  # noqa: E731
    for thr in (0.25, 0.001):
        res = evaluate_map50(lambda im: reference_detect(run, im, INPUT_SIZE, score_threshold=thr), eval_scenes)
        report[f"map50@conf{thr}"] = res["map"]
        report[f"ap50_per_class@conf{thr}"] = {CLASS_NAMES[c]: round(v, 4) for c, v in res["ap"].items()}
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgerun.export.train_demo", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runtime/data/demo.onnx", help="ONNX file to write")
    p.add_argument("--steps", type=int, default=1300)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--fresh", type=int, default=8, help="new scenes per step (the rest are replayed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the default keeps one core free)")
    p.add_argument("--eval-scenes", type=int, default=100)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    model = train(args.steps, args.batch, args.lr, args.seed, args.threads, args.fresh)
    train_s = time.perf_counter() - t0
    report = export_and_score(model, args.out, args.eval_scenes)
    report["train_seconds"] = round(train_s, 1)
    report["steps"], report["batch"], report["fresh"] = args.steps, args.batch, args.fresh
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
