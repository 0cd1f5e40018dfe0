"""Checkpoint gates for the Ultralytics tasks without boxes: classify, semantic, depth.

``edgerun export best.pt`` exports with Ultralytics' exporter, then runs the checkpoint's own predictor
(``YOLO(pt).predict``) and edgerun's ``open_model(onnx)`` on the same images and compares, per image shape
(square / non-square):

- classify: top-1 agreement (a flip counts only when the reference's top two are further apart than
  ``MAX_PROB_DIFF``: a near-tie may change sides without drift) and the largest probability difference;
- semantic: the fraction of pixels with the same class (worst image);
- depth: the median relative depth error |ours - ref| / |ref| (worst image).
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["GATED_TASKS", "LIMITS", "compare_task_with_checkpoint", "format_task_gate", "onnx_task", "verify_files"]

GATED_TASKS = ("classify", "semantic", "depth")
# fp16 checkpoint weights vs the fp32 export (the trained YOLO26n-cls food101 .pt vs its ONNX) and the
# frameworks' own resizes: limits that pass agreement and refuse a wrong preprocessing (0.35 before)
MAX_PROB_DIFF = 0.02
# a .pt reduces bilinear-upsampled logits at frame size, the ONNX export bakes the argmax at input size (then
# nearest): Ultralytics' own YOLO(pt) vs YOLO(onnx) agree on 0.920-0.963 of the pixels (yolo26n-sem, backbone
# from the YOLO26n-cls checkpoint, random 19-class head spread to std 2; bus, zidane, astronaut; dynamic)
MIN_PIXEL_AGREEMENT = 0.9
MAX_DEPTH_REL_ERROR = 0.01
LIMITS = {"classify": MAX_PROB_DIFF, "semantic": MIN_PIXEL_AGREEMENT, "depth": MAX_DEPTH_REL_ERROR}


def onnx_task(path: str) -> str | None:
    """The ``task`` an Ultralytics export names in its metadata (None when absent)."""
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return meta.get("task")


def _tensor(x: Any) -> np.ndarray:
    return x.cpu().numpy() if hasattr(x, "cpu") else np.asarray(x)


def _compare(task: str, r: Any, d: Any) -> dict[str, Any]:
    """One image: Ultralytics' result ``r`` vs edgerun's ``d``."""
    if task == "classify":
        ref = _tensor(r.probs.data).astype(np.float32)
        new = d.probabilities
        order = np.argsort(-ref, kind="stable")
        top1_same = int(order[0]) == int(d.class_id[0])
        near_tie = len(ref) > 1 and float(ref[order[0]] - ref[order[1]]) <= MAX_PROB_DIFF
        return {"top1_same": top1_same, "top1_flip_ignored": (not top1_same) and near_tie,
                "top5_same": order[:5].tolist() == d.class_id[:5].tolist(),
                "max_prob_diff": float(np.abs(ref - new).max())}
    if task == "semantic":
        ref = _tensor(r.semantic_mask.data)
        same = ref.shape == d.label_map.shape
        return {"pixel_agreement": float((ref == d.label_map).mean()) if same else 0.0,
                "classes": int(len(np.unique(ref)))}
    ref = _tensor(r.depth.data).astype(np.float64)
    if ref.shape != d.depth.shape:
        return {"median_rel_error": float("inf")}
    rel = np.abs(d.depth - ref) / np.maximum(np.abs(ref), 1e-12)
    return {"median_rel_error": float(np.median(rel)), "depth_range": [float(ref.min()), float(ref.max())]}


def compare_task_with_checkpoint(task: str, pt: str, onnx_path: str, images: Sequence[tuple[str, np.ndarray]], *,
                                 imgsz: Any = 640, threads: int | None = None,
                                 progress: Callable[[int, int], None] | None = None, quiet: Any = None
                                 ) -> dict[str, Any]:
    """``YOLO(pt).predict`` vs ``open_model(onnx_path)`` for a classify/semantic/depth model on ``images``
    (name, BGR array). Returns the gate: ``ok``, ``problems``, ``by_shape`` (worst figures per image
    shape), ``per_image``, ``verified`` (at least one image)."""
    import contextlib

    from ultralytics import YOLO

    from edgerun.runtime import open_model

    if task not in GATED_TASKS:
        raise ValueError(f"task: expected one of {GATED_TASKS}, got {task!r}")
    ref_model = YOLO(pt)
    new = open_model(onnx_path, threads=threads)
    per_image, groups = [], {}
    for k, (name, img) in enumerate(images):
        with (quiet() if quiet is not None else contextlib.nullcontext()):
            r = ref_model.predict(img, imgsz=imgsz, device="cpu", verbose=False)[0]
        rec = _compare(task, r, new.run(img))
        h, w = img.shape[:2]
        shape = "square" if h == w else "non-square"
        per_image.append({"image": name, "size": [w, h], **rec})
        groups.setdefault(shape, []).append(rec)
        if progress is not None:
            progress(k + 1, len(images))
    by_shape, problems = {}, []
    for shape, recs in groups.items():
        g: dict[str, Any] = {"images": len(recs)}
        if task == "classify":
            g["top1_agree"] = sum(r["top1_same"] for r in recs)
            g["top1_flips_ignored"] = sum(r["top1_flip_ignored"] for r in recs)
            g["top5_agree"] = sum(r["top5_same"] for r in recs)
            g["max_prob_diff"] = max(r["max_prob_diff"] for r in recs)
            missed = g["images"] - g["top1_agree"] - g["top1_flips_ignored"]
            if missed:
                problems.append(f"{shape}: top-1 differs on {missed} of {g['images']} images")
            if g["max_prob_diff"] > MAX_PROB_DIFF:
                problems.append(f"{shape}: probabilities differ by {g['max_prob_diff']:.4f} > {MAX_PROB_DIFF}")
        elif task == "semantic":
            g["min_pixel_agreement"] = min(r["pixel_agreement"] for r in recs)
            if g["min_pixel_agreement"] < MIN_PIXEL_AGREEMENT:
                problems.append(f"{shape}: {g['min_pixel_agreement']:.4f} of the pixels agree < {MIN_PIXEL_AGREEMENT}")
        else:
            g["max_median_rel_error"] = max(r["median_rel_error"] for r in recs)
            if g["max_median_rel_error"] > MAX_DEPTH_REL_ERROR:
                problems.append(f"{shape}: median relative depth error {g['max_median_rel_error']:.4f} > "
                                f"{MAX_DEPTH_REL_ERROR}")
        by_shape[shape] = g
    return {"task": task, "verified": bool(per_image), "ok": not problems, "problems": problems,
            "by_shape": by_shape, "per_image": per_image}


def format_task_gate(gate: dict[str, Any]) -> str:
    """One line per image shape with the task's figures, then PASS/FAIL."""
    if not gate["verified"]:
        return ("checkpoint gate: NOT VERIFIED (no images: pass --verify-images DIR with images like the "
                "model's real input)")
    lines = []
    for shape, g in gate["by_shape"].items():
        if gate["task"] == "classify":
            what = (f"top-1 {g['top1_agree']}/{g['images']} ({g['top1_flips_ignored']} near-tie flips ignored), "
                    f"top-5 {g['top5_agree']}/{g['images']}, max prob diff {g['max_prob_diff']:.4f}")
        elif gate["task"] == "semantic":
            what = f"pixels agreeing (worst image) {g['min_pixel_agreement']:.4f}"
        else:
            what = f"median relative depth error (worst image) {g['max_median_rel_error']:.2e}"
        lines.append(f"checkpoint vs ONNX, {shape} ({g['images']} images): {what}")
    lines.append("checkpoint gate: " + ("PASS" if gate["ok"] else "FAIL: " + "; ".join(gate["problems"])))
    return "\n".join(lines)


def verify_files(verify_images: Any) -> list[str]:
    """Image files of ``--verify-images`` (a directory or a list); [] for None."""
    from .verify import image_files

    if verify_images is None:
        return []
    if isinstance(verify_images, (str, os.PathLike)):
        return image_files(str(verify_images), "--verify-images")
    return [str(f) for f in verify_images]
