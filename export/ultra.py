"""``edgerun export best.pt``: an Ultralytics checkpoint to an edge ONNX, checked against the checkpoint.

Ultralytics' own exporter writes the ONNX (its architectures, its code), edgerun finishes it
(``finish_onnx``: metadata schema, onnxslim, fp16/int8), then the gate runs the checkpoint's own
predictor (``YOLO(pt).predict``: rect letterboxing for a .pt) and edgerun's pipeline on the exported
file over the same images and compares boxes (F1 at IoU >= 0.9, same class), confidences,
keypoints and masks. ``ultralytics`` and torch are imported only inside these functions, never on the runtime
path. Checkpoints are full pickles: only export files you trust.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
import zipfile
from typing import Any, Callable, Sequence

import numpy as np

from .metrics import box_iou
from .task_gate import GATED_TASKS, compare_task_with_checkpoint, format_task_gate, verify_files
from .torch_export import ExportError
from .verify import NMS_MARGIN, nms_borderline

__all__ = ["is_ultralytics_checkpoint", "export_checkpoint", "compare_with_checkpoint"]

INSTALL = ('pip install torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu && '
           'pip install -e ".[export,ultralytics]" (the "ultralytics" extra of edgerun, for the workstation that '
           "exports)")
MIN_F1 = 0.99
MAX_CONF_DIFF = 0.02
MAX_KPT_PX = 2.0
# Measured on the 30 gate images at imgsz 320 (YOLOv8n-seg rebuilt from the shared ONNX; the fall YOLOv8s):
# fp32 masks agree exactly (min IoU 0.9999), fp16 min 0.953 (median 1.000); Ultralytics' own retina_masks=True
# vs its default differ by min 0.933 (median 0.990), so 0.9 passes fp16 and refuses gross mask errors.
MIN_MASK_IOU = 0.9
# fp16 moved confidences by at most 0.0033 (same data): a box this close to conf may flip sides without
# drift; the margin is MAX_CONF_DIFF, since a partner further below would fail the confidence limit anyway.
# (NMS_MARGIN, the same for the NMS IoU, lives in verify.py with finish_onnx's gate.)
FLIP_MARGIN = MAX_CONF_DIFF
# int8 moves confidences, keypoints and masks by design: gated on box F1 only, as finish_onnx's int8 gate
LIMITS = {"fp32": (MIN_F1, MAX_CONF_DIFF, MAX_KPT_PX, MIN_MASK_IOU),
          "fp16": (MIN_F1, MAX_CONF_DIFF, MAX_KPT_PX, MIN_MASK_IOU), "int8": (0.9, None, None, None)}


def is_ultralytics_checkpoint(path: str) -> bool:
    """True for a torch zip checkpoint whose pickle names ultralytics classes (read, never unpickled)."""
    if not str(path).lower().endswith(".pt") or not os.path.isfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            return name is not None and b"ultralytics" in z.read(name)
    except (zipfile.BadZipFile, OSError):
        return False


@contextlib.contextmanager
def _quiet():
    """Ultralytics logs INFO lines to stdout: keep stdout for edgerun's report (``--json``)."""
    logger = logging.getLogger("ultralytics")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        logger.setLevel(level)


def _yolo():
    os.environ.setdefault("YOLO_OFFLINE", "1")  # no update checks, no font or asset downloads
    try:
        from ultralytics import YOLO
    except ImportError as exc:
        raise ExportError(f"exporting an Ultralytics checkpoint needs ultralytics ({exc.name} missing): "
                          f"{INSTALL}") from None
    return YOLO


def export_checkpoint(pt: str, out: str, *, imgsz: int | Sequence[int] | None = None, dynamic: bool = True,
                      precision: str = "fp32", calib: str | None = None, calib_max: int = 32,
                      verify_images: Any = None, force: bool = False, threads: int | None = None,
                      progress: Callable[[int, int], None] | None = None, val: str | None = None,
                      verify_progress: Callable[[int, int], None] | None = None, head: str = "auto"
                      ) -> dict[str, Any]:
    """Export ``pt`` with Ultralytics' exporter, finish it into ``out`` and verify it against ``pt``.
    ``head``: ``finish_onnx``'s (int8 DFL detectors get edgerun's raw head by default).

    ``dynamic`` (default True): symbolic H/W, so edgerun letterboxes to the minimal stride-aligned
    rectangle as the checkpoint's own predictor does on non-square images (a static square export
    cannot reproduce that). Verified on ``verify_images``, else on the user's ``calib`` images (held-out
    ones for int8); with neither, the report says "not verified". ``val``: COCO mAP of Ultralytics' ONNX
    and the finished file (``finish_onnx``). ``progress(i, n)``: int8 calibration; ``verify_progress(i, n)``:
    the checkpoint gate, after each image. Raises ``ExportError`` when the
    exported model disagrees with the checkpoint (and leaves no file) unless ``force``."""
    from .finish import finish_onnx, umask_mode

    if os.path.exists(out) and not force:
        raise ExportError(f"{out} exists; pass --force to replace it")
    YOLO = _yolo()
    t0 = time.perf_counter()
    model_imgsz = imgsz if imgsz is not None else 640
    verify = verify_images
    if verify is None and precision != "int8":
        verify = calib if calib is not None else []  # the user's own images, never our scenes
    with tempfile.TemporaryDirectory(prefix="edgerun-ultra-") as tmp:
        local = os.path.join(tmp, os.path.basename(pt))
        shutil.copyfile(pt, local)  # Ultralytics writes next to the .pt; the source folder may be read-only
        try:
            with _quiet():
                model = YOLO(local)
                task = model.task
                if task == "classify" and imgsz is None:  # a classifier runs at the size it was trained at
                    model_imgsz = (getattr(model, "ckpt", None) or {}).get("train_args", {}).get("imgsz") or 224
                onnx_path = model.export(format="onnx", imgsz=model_imgsz, dynamic=dynamic, simplify=True,
                                         opset=17, device="cpu", verbose=False)
        except Exception as exc:  # noqa: BLE001 - Ultralytics raises many types; name it and stop
            raise ExportError(f"{pt}: Ultralytics' exporter failed: {type(exc).__name__}: {exc}") from None
        t_export = time.perf_counter() - t0
        if task in GATED_TASKS:  # no boxes: the task's own gate, fp32 as Ultralytics wrote it
            return _export_gated_task(task, pt, local, str(onnx_path), out, precision=precision, imgsz=model_imgsz,
                                      verify_images=verify_images if verify_images is not None else calib,
                                      force=force, threads=threads, dynamic=dynamic, t0=t0, t_export=t_export,
                                      progress=verify_progress)
        staged = os.path.join(tmp, "finished.onnx")
        report = finish_onnx(str(onnx_path), staged, precision=precision, calib=calib, calib_max=calib_max,
                             verify_images=verify, force=True, threads=threads, progress=progress,
                             require_verified=False, val=val, head=head)
        images = _read_all(report["verify_files"])
        gate = compare_with_checkpoint(local, staged, images, imgsz=model_imgsz, threads=threads,
                                       limits=LIMITS.get(precision, LIMITS["fp32"]), progress=verify_progress)
        gate["verify_from"] = report["verify_from"]
        report.update(checkpoint=os.path.abspath(pt), dynamic=dynamic, export_seconds=round(t_export, 2),
                      checkpoint_gate=gate, path=os.path.abspath(out))
        asked = verify_images is not None
        problems = list(gate["problems"]) + ([] if report["ok"] else list(report["problems"]))
        if not gate["verified"] and asked:
            problems.append(f"not verified: {pt} finds nothing on the --verify-images images")
        ok = not problems
        if not ok and not force:
            raise ExportError(f"{out}: the exported model disagrees with {pt} ({'; '.join(problems)}); "
                              "nothing written (--force keeps it anyway)")
        report.update(ok=ok, forced=not ok, verified=gate["verified"], problems=problems)
        _copy_as(staged, out, umask_mode())
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return report


def _export_gated_task(task: str, pt: str, local: str, onnx_path: str, out: str, *, precision: str, imgsz: Any,
                       verify_images: Any, force: bool, threads: int | None, dynamic: bool, t0: float,
                       t_export: float, progress: Callable[[int, int], None] | None) -> dict[str, Any]:
    """Classify / semantic / depth: Ultralytics' fp32 ONNX as is, gated by ``task_gate`` against ``pt``."""
    from .finish import umask_mode

    if precision != "fp32":
        raise ExportError(f"{pt}: precision {precision!r} is not supported for task {task!r} yet (fp32 only)")
    files = verify_files(verify_images)
    gate = compare_task_with_checkpoint(task, local, onnx_path, _read_all(files), imgsz=imgsz, threads=threads,
                                        progress=progress, quiet=_quiet)
    gate["verify_from"] = f"{len(files)} images" if files else "no images"
    problems = list(gate["problems"])
    if not gate["verified"] and verify_images is not None:
        problems.append(f"not verified: no readable images in {verify_images!r}")
    ok = not problems
    if not ok and not force:
        raise ExportError(f"{out}: the exported model disagrees with {pt} ({'; '.join(problems)}); "
                          "nothing written (--force keeps it anyway)")
    _copy_as(onnx_path, out, umask_mode())
    table = f"task {task}: Ultralytics' fp32 ONNX ({os.path.getsize(out)} bytes, dynamic={dynamic})"
    return {"task": task, "path": os.path.abspath(out), "checkpoint": os.path.abspath(pt), "precision": precision,
            "dynamic": dynamic, "export_seconds": round(t_export, 2), "checkpoint_gate": gate, "ok": ok,
            "forced": not ok, "verified": gate["verified"], "problems": problems, "table": table,
            "bytes": os.path.getsize(out), "seconds": round(time.perf_counter() - t0, 2)}


def _read_all(files: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    from edgerun.runtime.sources import read_image

    return [(f, read_image(f)) for f in files]  # already read once by finish_onnx


def _copy_as(src: str, out: str, mode: int) -> None:
    """Copy ``src`` to ``out`` atomically (staged beside ``out``, then ``os.replace``) with ``mode``."""
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise ExportError(f"output folder {folder!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".edgerun-export-", suffix=".onnx", dir=folder)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def compare_with_checkpoint(pt: str, onnx_path: str, images: Sequence[tuple[str, np.ndarray]], *,
                            imgsz: Any = 640, threads: int | None = None, conf: float = 0.25,
                            iou: float = 0.7, limits: tuple = LIMITS["fp32"], margin: float = FLIP_MARGIN,
                            nms_margin: float = NMS_MARGIN, progress: Callable[[int, int], None] | None = None
                            ) -> dict[str, Any]:
    """``YOLO(pt).predict`` vs edgerun's ``open_model(onnx_path)`` on ``images`` (name, BGR array).

    Both sides predict at ``conf - margin``; boxes are matched one-to-one (greedy by IoU, same class,
    IoU >= 0.9) and a pair counts when either side reaches ``conf`` (one side just under it is a
    threshold flip, not a miss); an unmatched box counts as a miss when it reaches ``conf``, unless NMS
    nearly suppressed it (IoU >= ``iou - nms_margin`` with a stronger same-class box that is paired:
    the other side suppressed that duplicate by a hair). Reported
    per image shape (square / non-square): F1, worst confidence difference, worst keypoint distance in
    pixels and, for segmentation, the min and median mask IoU of the pairs (reference masks mapped to
    the image as Ultralytics' ``scale_masks`` and plotting do). ``limits`` (min F1, max confidence
    difference, max keypoint px, min mask IoU; None: not gated) decide ``ok``. ``progress(i, n)`` is
    called after each image."""
    from edgerun.runtime import open_model

    YOLO = _yolo()
    ref_model = YOLO(pt)
    low = max(conf - margin, 0.0)
    new = open_model(onnx_path, threads=threads, score_threshold=low, iou_threshold=iou, strict=False)
    groups: dict[str, dict[str, Any]] = {}
    ious: dict[str, list[float]] = {}
    per_image = []
    for k, (name, img) in enumerate(images):
        with _quiet():
            r = ref_model.predict(img, imgsz=imgsz, conf=low, iou=iou, device="cpu", verbose=False)[0]
        rec, mask_ious = _compare_image(r, new.run(img), conf, iou - nms_margin)
        h, w = img.shape[:2]
        shape = "square" if h == w else "non-square"
        g = groups.setdefault(shape, dict.fromkeys(("images",) + _COUNTS, 0) | dict.fromkeys(_WORST, 0.0))
        g["images"] += 1
        for key in _COUNTS:
            g[key] += rec[key]
        for key in _WORST:
            g[key] = max(g[key], rec[key])
        ious.setdefault(shape, []).extend(mask_ious)
        per_image.append({"image": name, "size": [w, h], **rec, "min_mask_iou": min(mask_ious, default=None)})
        if progress is not None:
            progress(k + 1, len(images))
    problems = []
    for shape, g in groups.items():
        counted = 2 * g["matched"] + g["ref_only"] + g["new_only"]
        g["f1"] = 2.0 * g["matched"] / counted if counted else None
        g["min_mask_iou"] = min(ious[shape]) if ious[shape] else None
        g["median_mask_iou"] = float(np.median(ious[shape])) if ious[shape] else None
        problems += _problems(shape, g, limits)
    verified = sum(g["ref_boxes"] for g in groups.values()) > 0
    return {"verified": verified, "ok": not problems, "problems": problems, "by_shape": groups,
            "per_image": per_image, "conf": conf, "flip_margin": margin, "nms_margin": nms_margin}


_COUNTS = ("ref_boxes", "new_boxes", "matched", "ref_only", "new_only", "threshold_flips", "nms_borderline",
           "mask_pairs")
_WORST = ("max_conf_diff", "max_keypoint_px")


def _compare_image(r: Any, d: Any, conf: float, nms_near: float) -> tuple[dict[str, Any], list[float]]:
    """One image: Ultralytics' result ``r`` vs edgerun's ``d`` (both at the lowered threshold): the
    ``_COUNTS`` and ``_WORST`` fields, and the mask IoU of each pair."""
    rb = r.boxes.xyxy.cpu().numpy().astype(np.float64)
    rc, rk = r.boxes.conf.cpu().numpy(), r.boxes.cls.cpu().numpy().astype(int)
    nb, nc, nk = d.xyxy.astype(np.float64), d.confidence, d.class_id.astype(int)
    pairs = [(i, j) for i, j in _match(rb, rk, nb, nk) if max(rc[i], nc[j]) >= conf]
    ref_only, ref_nms = _unmatched(rb, rc, rk, {i for i, _ in pairs}, conf, nms_near)
    new_only, new_nms = _unmatched(nb, nc, nk, {j for _, j in pairs}, conf, nms_near)
    kpt = 0.0
    if r.keypoints is not None and "keypoints" in d.data and pairs:
        rkp, nkp = r.keypoints.xy.cpu().numpy(), d.data["keypoints"]
        kpt = max(float(np.abs(rkp[i] - nkp[j]).max()) for i, j in pairs)
    mask_ious = _mask_ious(r, d, pairs)
    rec = {"ref_boxes": int((rc >= conf).sum()), "new_boxes": int((nc >= conf).sum()), "matched": len(pairs),
           "ref_only": ref_only, "new_only": new_only,
           "threshold_flips": sum(1 for i, j in pairs if min(rc[i], nc[j]) < conf),
           "nms_borderline": ref_nms + new_nms, "mask_pairs": len(mask_ious),
           "max_conf_diff": max((abs(float(rc[i]) - float(nc[j])) for i, j in pairs), default=0.0),
           "max_keypoint_px": kpt}
    return rec, mask_ious


def _unmatched(boxes: np.ndarray, confs: np.ndarray, classes: np.ndarray, paired: set[int], conf: float,
               nms_near: float) -> tuple[int, int]:
    """(misses, NMS-borderline) among one side's unpaired boxes that reach ``conf`` (``nms_borderline``)."""
    lone = (confs >= conf) & ~np.isin(np.arange(len(boxes)), sorted(paired))
    near = nms_borderline(boxes, confs, classes, paired, nms_near)
    return int((lone & ~near).sum()), int((lone & near).sum())


def _problems(shape: str, g: dict[str, Any], limits: tuple) -> list[str]:
    min_f1, max_conf, max_kpt, min_mask = limits
    out = []
    if g["f1"] is not None and g["f1"] < min_f1:
        out.append(f"{shape}: box F1 {g['f1']:.3f} < {min_f1} (IoU >= 0.9, same class)")
    if max_conf is not None and g["max_conf_diff"] > max_conf:
        out.append(f"{shape}: confidence differs by {g['max_conf_diff']:.3f} > {max_conf}")
    if max_kpt is not None and g["max_keypoint_px"] > max_kpt:
        out.append(f"{shape}: keypoints differ by {g['max_keypoint_px']:.2f} px > {max_kpt}")
    if min_mask is not None and g["min_mask_iou"] is not None and g["min_mask_iou"] < min_mask:
        out.append(f"{shape}: mask IoU {g['min_mask_iou']:.3f} < {min_mask}")
    return out


def _mask_ious(r: Any, d: Any, pairs: list[tuple[int, int]]) -> list[float]:
    """IoU of each pair's masks in image pixels: the reference's ``r.masks.data`` (tensor resolution)
    mapped as Ultralytics' plotting does (``scale_masks(...) > 0.5``), edgerun's ``d.mask`` as is."""
    if r.masks is None or d.mask is None or not pairs:
        return []
    from ultralytics.utils import ops

    data = r.masks.data[[i for i, _ in pairs]]
    ref = (ops.scale_masks(data[None].float(), d.mask.shape[1:])[0] > 0.5).cpu().numpy()
    out = []
    for a, (_, j) in zip(ref, pairs):
        b = d.mask[j]
        union = int(np.logical_or(a, b).sum())
        out.append(int(np.logical_and(a, b).sum()) / union if union else 1.0)
    return out


def _match(rb: np.ndarray, rk: np.ndarray, nb: np.ndarray, nk: np.ndarray, iou_min: float = 0.9
           ) -> list[tuple[int, int]]:
    if len(rb) == 0 or len(nb) == 0:
        return []
    iou = box_iou(rb, nb)
    iou[rk[:, None] != nk[None, :]] = 0.0
    pairs, used_r, used_n = [], set(), set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = divmod(int(flat), iou.shape[1])
        if iou[i, j] < iou_min:
            break
        if i not in used_r and j not in used_n:
            pairs.append((i, j))
            used_r.add(i)
            used_n.add(j)
    return pairs


def format_gate(gate: dict[str, Any]) -> str:
    """One line per image shape: what the checkpoint and the ONNX agreed on."""
    if gate.get("task") in GATED_TASKS:
        return format_task_gate(gate)
    if not gate["verified"]:
        where = gate.get("verify_from", f"{len(gate['per_image'])} images")
        return (f"checkpoint gate: NOT VERIFIED (the checkpoint's own predictor found nothing on {where}; pass "
                "--verify-images DIR with images like the model's real input)")
    lines = []
    for shape, g in gate["by_shape"].items():
        f1 = "n/a" if g["f1"] is None else f"{g['f1']:.3f}"
        near = [f"{g[k]} {what}" for k, what in (("threshold_flips", "across the conf threshold"),
                                                 ("nms_borderline", "NMS-borderline ignored")) if g.get(k)]
        flips = f" ({', '.join(near)})" if near else ""
        masks = (f", mask IoU min {g['min_mask_iou']:.3f} median {g['median_mask_iou']:.3f} "
                 f"({g['mask_pairs']} pairs)") if g.get("min_mask_iou") is not None else ""
        lines.append(f"checkpoint vs ONNX, {shape} ({g['images']} images): boxes {g['ref_boxes']}/{g['new_boxes']}, "
                     f"F1 @IoU0.9 {f1}{flips}, max conf diff {g['max_conf_diff']:.4f}, "
                     f"max keypoint diff {g['max_keypoint_px']:.2f} px{masks}")
    lines.append("checkpoint gate: " + ("PASS" if gate["ok"] else "FAIL: " + "; ".join(gate["problems"])))
    return "\n".join(lines)
