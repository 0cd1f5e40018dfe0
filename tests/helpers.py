"""Test helpers: where ../shared is, box matching, an independent plain numpy+OpenCV reference
detector, and the kernels compiled so far."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The real models/photos/video: ``$EDGERUN_SHARED`` if set, else ``../shared`` beside the
    project. The one place tests and their child processes resolve it (benchmarks have their own
    copy of this rule in ``benchmarks/_shared.py``: benchmarks never import tests)."""
    env = os.environ.get("EDGERUN_SHARED")
    return Path(env) if env else ROOT.parent / "shared"


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def match(pred_xyxy, pred_conf, pred_cls, ref_xyxy, ref_conf, ref_cls, iou_min: float, iou=None):
    """Greedy one-to-one matching (highest IoU first, same class). Returns pairs, unmatched pred
    indices and unmatched ref indices. ``iou``: a precomputed (pred, ref) overlap matrix to use instead."""
    iou = iou_matrix(pred_xyxy, ref_xyxy) if iou is None else np.asarray(iou, np.float64)
    same = np.asarray(pred_cls)[:, None] == np.asarray(ref_cls)[None, :]
    iou = np.where(same, iou, 0.0)
    pairs, used_p, used_r = [], set(), set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] < iou_min:
            break
        if i in used_p or j in used_r:
            continue
        pairs.append((int(i), int(j), float(iou[i, j])))
        used_p.add(i)
        used_r.add(j)
    up = [i for i in range(len(pred_conf)) if i not in used_p]
    ur = [j for j in range(len(ref_conf)) if j not in used_r]
    return pairs, up, ur


def reference_detect(session, image_bgr, size, score_threshold=0.25, iou_threshold=0.7,
                     max_det=300, pad=114):
    """A straightforward pipeline written independently of edgerun: cv2 letterbox + numpy decode
    (Ultralytics v8 head) + cv2.dnn.NMSBoxesBatched. Returns xyxy (source px), conf, cls."""
    import cv2

    h, w = image_bgr.shape[:2]
    r = min(size[0] / h, size[1] / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    dw, dh = (size[1] - nw) / 2, (size[0] - nh) / 2
    img = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nw, nh) != (w, h) else image_bgr
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad, pad, pad))
    x = img[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    inp = session.get_inputs()[0]
    if "float16" in inp.type:
        x = x.astype(np.float16)
    out = session.run(None, {inp.name: x})[0][0].astype(np.float32).T  # (N, 4 + C)
    scores = out[:, 4:]
    cls = scores.argmax(1)
    conf = scores[np.arange(len(cls)), cls]
    keep = conf > score_threshold
    box, conf, cls = out[keep, :4], conf[keep], cls[keep]
    xywh = np.stack([box[:, 0] - box[:, 2] / 2, box[:, 1] - box[:, 3] / 2, box[:, 2], box[:, 3]], 1)
    idx = cv2.dnn.NMSBoxesBatched(xywh.tolist(), conf.tolist(), cls.tolist(), score_threshold, iou_threshold)
    idx = np.asarray(idx, np.int64).reshape(-1)
    idx = idx[np.argsort(-conf[idx], kind="stable")][:max_det]
    xyxy = np.concatenate([xywh[idx, :2], xywh[idx, :2] + xywh[idx, 2:]], 1)
    gain = min(size[0] / h, size[1] / w)
    px, py = round((size[1] - w * gain) / 2 - 0.1), round((size[0] - h * gain) / 2 - 0.1)
    xyxy = (xyxy - [px, py, px, py]) / gain
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
    return xyxy.astype(np.float32), conf[idx].astype(np.float32), cls[idx].astype(np.int64)


def kernels() -> dict:
    """Every edgerun kernel object (``edgerun.kernels._jit._Kernel``) by ``"module.name"``."""
    import importlib
    import pkgutil

    import edgerun.kernels as package
    from edgerun.kernels._jit import _Kernel

    out = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"edgerun.kernels.{info.name}")
        for name, obj in vars(module).items():
            if isinstance(obj, _Kernel) and obj.__module__ == module.__name__:
                out[f"{info.name}.{name}"] = obj
    return out


def kernel_signatures() -> dict[str, set[str]]:
    """Every edgerun kernel (``"module.name"``) with the signatures compiled or loaded from the cache
    so far in this process (an empty set for a kernel not called yet)."""
    return {name: {str(s) for s in k.signatures} for name, k in kernels().items()}


def write_scenes(folder: Path, n: int, seed: int = 100) -> Path:
    """``n`` demo scenes (the bundled demo model's classes) as PNGs in the new ``folder``."""
    import cv2

    from edgerun.runtime.demo import make_scene

    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / f"scene{i:02d}.png"), make_scene(seed + i, (320 + 16 * (i % 3), 320))[0])
    return folder


def load_benchmark(name: str):
    """The module ``benchmarks/<name>.py`` (benchmarks are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
