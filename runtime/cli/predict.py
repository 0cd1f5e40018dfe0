"""``edgerun predict``: run a detector over images, directories, globs and videos."""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from edgerun.kernels.errors import EdgerunError

from ..tasks.detector import Detector
from ..results import Classifications, Detections, SemanticMask, frame_record
from ..sources import VIDEO_EXTS, Frame, ImageError, iter_frames, video_fps

DEMO_MODEL = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "demo.onnx")


def _split_inputs(inputs: list[str]) -> tuple[str, str | None]:
    """``[MODEL] [SOURCE]``: a first argument ending in .onnx is the model, else the demo model."""
    if inputs and inputs[0].lower().endswith(".onnx"):
        return inputs[0], (inputs[1] if len(inputs) > 1 else None)
    if len(inputs) > 1:
        raise ImageError(f"expected [MODEL.onnx] [SOURCE], got {inputs}")
    return DEMO_MODEL, (inputs[0] if inputs else None)


def run_predict(args) -> int:
    model, source = _split_inputs(args.inputs)
    if model == DEMO_MODEL and not os.path.exists(DEMO_MODEL):
        raise ImageError("no model given and the bundled demo model is not installed; "
                         "usage: edgerun predict MODEL.onnx SOURCE")
    overrides: dict[str, Any] = {}
    if args.imgsz:
        overrides["input_size"] = tuple(args.imgsz * 2 if len(args.imgsz) == 1 else args.imgsz[:2])
    if args.head:
        overrides["head"] = args.head
    if args.num_classes:
        overrides["num_classes"] = args.num_classes
    from ..tasks.dispatch import open_model
    given = {"score_threshold": args.conf, "iou_threshold": args.iou}  # None: the task's default
    options = {k: v for k, v in given.items() if v is not None}
    det = open_model(model, task=getattr(args, "task", None), strict=False, max_detections=args.max_det,
                     class_agnostic=args.agnostic, threads=args.threads, **options, **overrides)
    if source is None:
        from ..demo import sample_scene_path
        source = sample_scene_path()
    return _run(det, source, args)


def _run(det: Detector, source: str, args) -> int:
    names = det.spec.names
    failures = frames = 0
    writers: dict[str, Any] = {}
    progress = _Progress(enabled=sys.stderr.isatty() and not args.json)
    t0 = time.perf_counter()
    try:
        for frame in iter_frames(source):
            frames += 1
            result = None
            if frame.error is None:
                try:
                    result = det.detect(frame.image)
                except EdgerunError as exc:
                    frame.error = f"{frame.source}: {exc}"
            if frame.error:
                failures += 1
                print(f"edgerun: error: {frame.error}", file=sys.stderr)
            if args.json:
                print(json.dumps(frame_record(frame, result, names)), flush=True)
            elif result is not None:
                print(_summary(frame, result, names))
            if args.save and result is not None:
                _save(frame, result, det, args.save, writers)
            progress.update(frames)
    finally:
        for w in writers.values():
            w.release()
        progress.close()
    if not args.json:
        dt = time.perf_counter() - t0
        print(f"{frames} frame(s), {failures} error(s), {dt:.2f} s"
              + (f"; annotated output in {args.save}" if args.save else ""), file=sys.stderr)
    return 1 if failures else 0


def _summary(frame: Frame, det: Detections | Classifications | SemanticMask, names: tuple[str, ...]) -> str:
    counts: dict[str, int] = {}
    for c in getattr(det, "class_id", ()):
        n = names[c] if 0 <= c < len(names) else str(c)
        counts[n] = counts.get(n, 0) + 1
    objs = ", ".join(f"{v} {k}" for k, v in counts.items()) or "nothing"
    if isinstance(det, Classifications):  # top-k classes instead of object counts
        objs = ", ".join(f"{names[c] if 0 <= c < len(names) else c} {p:.3f}"
                         for c, p in zip(det.class_id.tolist(), det.confidence.tolist()))
    if isinstance(det, SemanticMask):  # share of the image per class
        objs = ", ".join(f"{r['class_name']} {r['fraction']:.0%}" for r in det.to_records(names))
    t = det.timings
    where = f"{frame.source}" + (f"#{frame.index}" if frame.index else "")
    return (f"{where}: {objs} ({t['preprocess']:.1f} ms pre, {t['inference']:.1f} ms inference, "
            f"{t['postprocess']:.1f} ms post)")


def _save(frame: Frame, det: Detections, detector: Detector, out_dir: str, writers: dict) -> None:
    import cv2

    from ..tasks.dispatch import annotate

    os.makedirs(out_dir, exist_ok=True)
    img = frame.image.copy()
    annotate(img, det, detector.spec.names)
    base = os.path.splitext(os.path.basename(frame.source))[0]
    if os.path.splitext(frame.source)[1].lower() in VIDEO_EXTS:
        w = writers.get(frame.source)
        if w is None:
            path = os.path.join(out_dir, base + ".mp4")
            w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), video_fps(frame.source),
                                (img.shape[1], img.shape[0]))
            writers[frame.source] = w
        w.write(img)
    else:
        cv2.imwrite(os.path.join(out_dir, base + ".jpg"), img)


class _Progress:
    """A one-line frame counter on stderr, only on a terminal."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.last = 0.0

    def update(self, n: int) -> None:
        now = time.perf_counter()
        if self.enabled and now - self.last > 0.2:
            self.last = now
            print(f"\r{n} frames, {n / max(now - self.t0, 1e-9):.1f} fps", end="", file=sys.stderr)

    def close(self) -> None:
        if self.enabled:
            print(file=sys.stderr)
