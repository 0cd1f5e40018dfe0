"""``--val DIR``: COCO mAP of an ONNX detector on a YOLO-format labelled folder, by a maintained evaluator.

Labels are Ultralytics' txt files (``class cx cy w h``, normalised), found the way Ultralytics finds them:
the last ``images`` folder of the image path replaced by ``labels`` (``coco128/images/train2017/x.jpg`` ->
``coco128/labels/train2017/x.txt``), or ``DIR/labels`` beside ``DIR/images``. Detections come from edgerun's
own pipeline at COCO-style settings (score threshold 0.001, NMS IoU 0.7, 300 per image); the evaluator is
faster-coco-eval or pycocotools (optional imports, in the ``export`` extra), never a hand-written one.
"""
from __future__ import annotations

import contextlib
import io
import os
from typing import Any, Callable

import numpy as np

from .torch_export import ExportError
from .verify import image_files

__all__ = ["label_path", "coco_map", "coco_map_fns"]

MISSING = ('--val needs a COCO evaluator: pip install faster-coco-eval (or pycocotools); both come with '
           'pip install -e ".[export]"')


def label_path(image: str) -> str:
    """Ultralytics' rule: ``.../images/.../name.ext`` -> ``.../labels/.../name.txt``."""
    parts = os.path.abspath(image).split(os.sep)
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        parts[i] = "labels"
    return os.path.splitext(os.sep.join(parts))[0] + ".txt"


def _images(folder: str) -> list[str]:
    sub = os.path.join(folder, "images")
    try:
        return image_files(sub if os.path.isdir(sub) else folder, "--val")
    except ValueError as exc:
        raise ExportError(str(exc)) from None


def _evaluator():
    try:
        from faster_coco_eval import COCO, COCOeval_faster as COCOeval
    except ImportError:
        try:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval
        except ImportError:
            raise ExportError(MISSING) from None
    return COCO, COCOeval


def _ground_truth(files: list[str], sizes: list[tuple[int, int]]) -> tuple[dict, int]:
    anns, labelled = [], 0
    for image_id, (f, (h, w)) in enumerate(zip(files, sizes)):
        path = label_path(f)
        if not os.path.isfile(path):
            continue
        labelled += 1
        rows = np.loadtxt(path, ndmin=2, dtype=np.float64) if os.path.getsize(path) else np.zeros((0, 5))
        for cls, cx, cy, bw, bh in rows[:, :5]:
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": int(cls), "bbox": box,
                         "area": box[2] * box[3], "iscrowd": 0})
    images = [{"id": i, "width": w, "height": h} for i, (h, w) in enumerate(sizes)]
    cats = sorted({a["category_id"] for a in anns})
    return {"images": images, "annotations": anns, "categories": [{"id": c} for c in cats]}, labelled


def coco_map(models: dict[str, str], folder: str, *, threads: int | None = None,
             spec_overrides: dict[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """``{name: {"map50_95", "map50"}}`` for each ONNX file in ``models`` on the labelled ``folder``."""
    from edgerun.runtime.tasks.detector import Detector

    dets = {name: Detector.from_path(path, score_threshold=0.001, iou_threshold=0.7, threads=threads,
                                     **(spec_overrides or {})).detect for name, path in models.items()}
    return coco_map_fns(dets, folder)


def coco_map_fns(detectors: dict[str, Callable[[np.ndarray], Any]], folder: str) -> dict[str, dict[str, float]]:
    """``coco_map`` for callables (BGR image -> ``Detections``-like with xyxy, confidence, class_id),
    e.g. another runtime's raw outputs through edgerun's pre/post-processing. Run them at COCO-style
    settings (score threshold 0.001, NMS IoU 0.7, 300 per image) for numbers comparable with ``coco_map``."""
    from edgerun.runtime.sources import read_image

    COCO, COCOeval = _evaluator()
    files = _images(folder)
    frames = [read_image(f) for f in files]
    gt_dict, labelled = _ground_truth(files, [im.shape[:2] for im in frames])
    if not labelled:
        raise ExportError(f"--val: no YOLO label files for the images in {folder!r} (expected e.g. "
                          f"{label_path(files[0])})")
    results = {}
    for name, detect in detectors.items():
        dets = []
        for image_id, im in enumerate(frames):
            d = detect(im)
            for (x1, y1, x2, y2), s, c in zip(np.asarray(d.xyxy).tolist(), np.asarray(d.confidence).tolist(),
                                              np.asarray(d.class_id).tolist()):
                dets.append({"image_id": image_id, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1],
                             "score": float(s)})
        results[name] = _evaluate(COCO, COCOeval, gt_dict, dets)
    results["images"] = {"count": len(files), "labelled": labelled, "boxes": len(gt_dict["annotations"])}
    return results


def _evaluate(COCO, COCOeval, gt_dict: dict, dets: list[dict]) -> dict[str, float]:
    with contextlib.redirect_stdout(io.StringIO()):  # both evaluators print their tables on stdout
        gt = COCO()
        gt.dataset = {**gt_dict, "annotations": [dict(a) for a in gt_dict["annotations"]]}
        gt.createIndex()
        if not dets:
            return {"map50_95": 0.0, "map50": 0.0}
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"map50_95": float(ev.stats[0]), "map50": float(ev.stats[1])}
