"""The arm64 lane's check (.ci/arm64): `edgerun predict --json` output on arm64 vs x86, per model.

``--exact`` models (float weights, and ORT's dynamic int8 whose rounding both CPUs share): the same
detections, class for class, every box corner and keypoint within ``--max-px`` (0.5 px).
``--gate`` models (static int8 QDQ: int8 kernels round differently per CPU class) are compared as the
export gate compares an int8 export with its source: detections paired one-to-one (greedy, highest IoU
first, same class, IoU >= 0.9); every detection scoring at least ``--solid`` must have a partner, and the
unpaired ones below it are reported as borderline. The spread (max box px, max confidence difference)
is printed either way. Exit status 1 on any mismatch.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import match  # noqa: E402 - tests/helpers.py, beside this folder


def load(path: Path) -> dict[str, list[dict]]:
    """{image file name: detections} from one JSONL file (one record per frame)."""
    if not path.is_file():
        raise SystemExit(f"compare: {path} is missing")
    out = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        out[Path(rec["source"]).name] = rec["detections"]
    if not out:
        raise SystemExit(f"compare: {path} holds no frames")
    return out


def pair(a: list[dict], b: list[dict], iou_min: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """One-to-one pairs (greedy, highest IoU first, same class, IoU >= iou_min), unpaired of a, of b."""
    def cols(d):
        return (np.array([x["xyxy"] for x in d], float).reshape(-1, 4), [x["confidence"] for x in d],
                [x["class_id"] for x in d])
    pairs, lone_a, lone_b = match(*cols(a), *cols(b), iou_min)
    return [(i, j) for i, j, _ in pairs], lone_a, lone_b


def spread(a: list[dict], b: list[dict], pairs: list[tuple[int, int]]) -> tuple[float, float, float]:
    """(max box corner px, max keypoint px, max confidence difference) over the pairs."""
    box = kpt = conf = 0.0
    for i, j in pairs:
        box = max(box, float(np.abs(np.subtract(a[i]["xyxy"], b[j]["xyxy"])).max()))
        conf = max(conf, abs(a[i]["confidence"] - b[j]["confidence"]))
        if "keypoints" in a[i] or "keypoints" in b[j]:
            ka, kb = np.array(a[i].get("keypoints", []), float), np.array(b[j].get("keypoints", []), float)
            kpt = max(kpt, float(np.abs(ka - kb).max(initial=0.0)) if ka.shape == kb.shape else float("inf"))
    return box, kpt, conf


def compare(name: str, x86: dict, arm: dict, *, exact: bool, max_px: float, iou_min: float,
            solid: float) -> list[str]:
    """Problems found for one model (empty: it agrees); prints one line per image."""
    problems = []
    if set(x86) != set(arm):
        return [f"{name}: images differ: x86 {sorted(x86)} vs arm64 {sorted(arm)}"]
    for image in sorted(x86):
        a, b = x86[image], arm[image]
        pairs, ia, ib = pair(a, b, 0.5 if exact else iou_min)
        box, kpt, conf = spread(a, b, pairs)
        lone_a, lone_b = [a[i] for i in ia], [b[j] for j in ib]
        border = [d for d in lone_a + lone_b if d["confidence"] < solid]
        print(f"  {name:24s} {image:12s} x86 {len(a):2d} arm64 {len(b):2d} paired {len(pairs):2d}  "
              f"max box {box:.3f} px  max kpt {kpt:.3f} px  max conf diff {conf:.5f}"
              + (f"  borderline unpaired {len(border)}" if border and not exact else ""))
        where = f"{name} {image}"
        if exact:
            if lone_a or lone_b:
                problems.append(f"{where}: unpaired detections x86 {lone_a} arm64 {lone_b}")
            if box > max_px or kpt > max_px:
                problems.append(f"{where}: boxes/keypoints differ by {max(box, kpt):.3f} px > {max_px} px")
        else:
            solid_lone = [d for d in lone_a + lone_b if d["confidence"] >= solid]
            if solid_lone:
                problems.append(f"{where}: detections scoring >= {solid} without a partner at IoU >= "
                                f"{iou_min}: {solid_lone}")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--x86", type=Path, required=True, help="folder of <model>.jsonl from x86")
    p.add_argument("--arm", type=Path, required=True, help="folder of <model>.jsonl from arm64")
    p.add_argument("--exact", nargs="*", default=[], help="models compared box for box")
    p.add_argument("--gate", nargs="*", default=[], help="models compared as the int8 export gate does")
    p.add_argument("--max-px", type=float, default=0.5)
    p.add_argument("--iou", type=float, default=0.9)
    p.add_argument("--solid", type=float, default=0.30,
                   help="gate models: a detection scoring this much must be paired (default 0.30: the 0.25 "
                        "threshold + the export gate's 0.05 margin)")
    args = p.parse_args(argv)
    if not args.exact and not args.gate:
        p.error("name at least one model (--exact or --gate)")
    print(f"=== arm64 vs x86: exact (<= {args.max_px} px): {args.exact}; gate (IoU >= {args.iou}): {args.gate}")
    problems = []
    for names, exact in ((args.exact, True), (args.gate, False)):
        for name in names:
            problems += compare(name, load(args.x86 / f"{name}.jsonl"), load(args.arm / f"{name}.jsonl"),
                                exact=exact, max_px=args.max_px, iou_min=args.iou, solid=args.solid)
    for problem in problems:
        print(f"MISMATCH {problem}")
    print("arm64 vs x86: " + ("agree" if not problems else f"{len(problems)} mismatch(es)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
