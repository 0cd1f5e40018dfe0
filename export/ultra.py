"""``edgerun export best.pt``: an Ultralytics checkpoint to an edge ONNX, checked against the checkpoint.

Ultralytics' own exporter writes the ONNX (its architectures, its code), edgerun finishes it
(``finish_onnx``: metadata schema, onnxslim, fp16/int8), then the gate runs the checkpoint's own
predictor (``YOLO(pt).predict``: rect letterboxing for a .pt) and edgerun's pipeline on the exported
file over the same images and compares boxes (F1 at IoU >= 0.9, same class), confidences and
keypoints. ``ultralytics`` and torch are imported only inside these functions, never on the runtime
path. Checkpoints are full pickles: only export files you trust.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import zipfile
from typing import Any, Sequence

import numpy as np

from .metrics import box_iou
from .torch_export import ExportError

__all__ = ["is_ultralytics_checkpoint", "export_checkpoint", "compare_with_checkpoint"]

INSTALL = ('pip install torch==2.13.0 && pip install -e ".[export,ultralytics]" (the "ultralytics" extra of '
           "edgerun, for the workstation that exports)")
MIN_F1 = 0.99
MAX_CONF_DIFF = 0.02
MAX_KPT_PX = 2.0


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


def _yolo():
    os.environ.setdefault("YOLO_OFFLINE", "1")  # no update checks, no font or asset downloads
    try:
        from ultralytics import YOLO
    except ImportError as exc:
        raise ExportError(f"exporting an Ultralytics checkpoint needs ultralytics ({exc.name} missing): "
                          f"{INSTALL}") from None
    return YOLO


def export_checkpoint(pt: str, out: str, *, imgsz: int | Sequence[int] | None = None, dynamic: bool = False,
                      precision: str = "fp32", calib: str | None = None, verify_images: Any = None,
                      force: bool = False, threads: int | None = None, progress=None) -> dict[str, Any]:
    """Export ``pt`` with Ultralytics' exporter, finish it into ``out`` and verify it against ``pt``.

    ``dynamic`` (default True): symbolic H/W so edgerun letterboxes to the minimal stride-aligned
    rectangle, as the checkpoint's own predictor does on non-square images. Raises ``ExportError`` when
    the exported model disagrees with the checkpoint (and leaves no file) unless ``force``."""
    from .finish import verify_set, finish_onnx

    if os.path.exists(out) and not force:
        raise ExportError(f"{out} exists; pass --force to replace it")
    YOLO = _yolo()
    t0 = time.perf_counter()
    model_imgsz = imgsz if imgsz is not None else 640
    with tempfile.TemporaryDirectory(prefix="edgerun-ultra-") as tmp:
        local = os.path.join(tmp, os.path.basename(pt))
        shutil.copyfile(pt, local)  # Ultralytics writes next to the .pt; the source folder may be read-only
        try:
            onnx_path = YOLO(local).export(format="onnx", imgsz=model_imgsz, dynamic=dynamic, simplify=True,
                                           opset=17, device="cpu", verbose=False)
        except Exception as exc:  # noqa: BLE001 - Ultralytics raises many types; name it and stop
            raise ExportError(f"{pt}: Ultralytics' exporter failed: {type(exc).__name__}: {exc}") from None
        t_export = time.perf_counter() - t0
        staged = os.path.join(tmp, "finished.onnx")
        report = finish_onnx(str(onnx_path), staged, precision=precision, calib=calib,
                             verify_images=verify_images, force=True, threads=threads, progress=progress)
        images = verify_set(verify_images)
        gate = compare_with_checkpoint(local, staged, images, imgsz=model_imgsz, threads=threads)
        report.update(checkpoint=os.path.abspath(pt), dynamic=dynamic, export_seconds=round(t_export, 2),
                      checkpoint_gate=gate, path=os.path.abspath(out))
        ok = gate["verified"] and gate["ok"] and report["ok"]
        if not ok and gate["verified"] and not force:
            raise ExportError(f"{out}: the exported model disagrees with {pt} ({'; '.join(gate['problems'])}); "
                              "nothing written (--force keeps it anyway)")
        report["ok"], report["forced"] = ok, not ok and gate["verified"]
        _copy_with_umask(staged, out)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return report


def _copy_with_umask(src: str, out: str) -> None:
    folder = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=".edgerun-export-", suffix=".onnx", dir=folder)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def compare_with_checkpoint(pt: str, onnx_path: str, images: Sequence[tuple[str, np.ndarray]], *,
                            imgsz: Any = 640, threads: int | None = None, conf: float = 0.25,
                            iou: float = 0.7) -> dict[str, Any]:
    """``YOLO(pt).predict`` vs edgerun's ``open_model(onnx_path)`` on ``images`` (name, BGR array).

    Boxes are matched one-to-one (greedy by IoU, same class, IoU >= 0.9); reported per image shape
    (square / non-square): F1, worst confidence difference and worst keypoint distance in pixels."""
    from edgerun.runtime import open_model

    YOLO = _yolo()
    ref_model = YOLO(pt)
    new = open_model(onnx_path, threads=threads, score_threshold=conf, iou_threshold=iou, strict=False)
    groups: dict[str, dict[str, float]] = {}
    per_image = []
    for name, img in images:
        r = ref_model.predict(img, imgsz=imgsz, conf=conf, iou=iou, device="cpu", verbose=False)[0]
        rb = r.boxes.xyxy.cpu().numpy().astype(np.float64)
        rc, rk = r.boxes.conf.cpu().numpy(), r.boxes.cls.cpu().numpy().astype(int)
        d = new.detect(img)
        nb, nc, nk = d.xyxy.astype(np.float64), d.confidence, d.class_id.astype(int)
        pairs = _match(rb, rk, nb, nk)
        conf_diff = max((abs(float(rc[i]) - float(nc[j])) for i, j in pairs), default=0.0)
        kpt = 0.0
        if r.keypoints is not None and "keypoints" in d.data and pairs:
            rkp = r.keypoints.xy.cpu().numpy()
            nkp = d.data["keypoints"]
            kpt = max(float(np.abs(rkp[i] - nkp[j]).max()) for i, j in pairs)
        h, w = img.shape[:2]
        shape = "square" if h == w else "non-square"
        g = groups.setdefault(shape, {"images": 0, "ref_boxes": 0, "new_boxes": 0, "matched": 0,
                                      "max_conf_diff": 0.0, "max_keypoint_px": 0.0})
        g["images"] += 1
        g["ref_boxes"] += len(rb)
        g["new_boxes"] += len(nb)
        g["matched"] += len(pairs)
        g["max_conf_diff"] = max(g["max_conf_diff"], conf_diff)
        g["max_keypoint_px"] = max(g["max_keypoint_px"], kpt)
        per_image.append({"image": name, "size": [w, h], "ref_boxes": len(rb), "new_boxes": len(nb),
                          "matched": len(pairs), "max_conf_diff": conf_diff, "max_keypoint_px": kpt})
    problems = []
    for shape, g in groups.items():
        total = g["ref_boxes"] + g["new_boxes"]
        g["f1"] = 2.0 * g["matched"] / total if total else None
        if g["f1"] is not None and g["f1"] < MIN_F1:
            problems.append(f"{shape}: box F1 {g['f1']:.3f} < {MIN_F1} (IoU >= 0.9, same class)")
        if g["max_conf_diff"] > MAX_CONF_DIFF:
            problems.append(f"{shape}: confidence differs by {g['max_conf_diff']:.3f} > {MAX_CONF_DIFF}")
        if g["max_keypoint_px"] > MAX_KPT_PX:
            problems.append(f"{shape}: keypoints differ by {g['max_keypoint_px']:.2f} px > {MAX_KPT_PX}")
    verified = sum(g["ref_boxes"] for g in groups.values()) > 0
    return {"verified": verified, "ok": not problems, "problems": problems, "by_shape": groups,
            "per_image": per_image}


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
    if not gate["verified"]:
        return "checkpoint gate: not verified (the checkpoint's own predictor found nothing on these images)"
    lines = []
    for shape, g in gate["by_shape"].items():
        f1 = "n/a" if g["f1"] is None else f"{g['f1']:.3f}"
        lines.append(f"checkpoint vs ONNX, {shape} ({g['images']} images): boxes {g['ref_boxes']}/{g['new_boxes']}, "
                     f"F1 @IoU0.9 {f1}, max conf diff {g['max_conf_diff']:.4f}, "
                     f"max keypoint diff {g['max_keypoint_px']:.2f} px")
    lines.append("checkpoint gate: " + ("PASS" if gate["ok"] else "FAIL: " + "; ".join(gate["problems"])))
    return "\n".join(lines)
