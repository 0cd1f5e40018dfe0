"""``edgerun predict``: run a model over images, directories, globs and videos.

Every input named is processed or reported: all positional sources and ``source=`` values, in
order (each file once). Inputs and the ``--save`` folder are checked before the model runs.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Iterator

from edgerun.kernels.errors import EdgerunError

from . import UsageError, compile_notice
from ..progress import Progress
from ..results import Classifications, DepthMap, Detections, SemanticMask, frame_record
from ..sources import VIDEO_EXTS, Frame, ImageError, expand_source, iter_frames, read_image, video_fps

__all__ = ["run_predict", "resolve_inputs", "expand_inputs", "DEMO_MODEL"]

DEMO_MODEL = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "demo.onnx")
OTHER_MODEL_EXTS = (".pt", ".pth", ".engine", ".tflite", ".torchscript", ".mlmodel", ".pb", ".xml")
SAVE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}  # kept; others saved as .jpg


def resolve_inputs(args) -> tuple[str, list[str], bool]:
    """(model, sources, demo) from the positionals, ``--model``/``model=`` and ``--source``/``source=``.

    The model is the ``.onnx`` among the positionals (wherever it is) or ``model=``; a missing
    model is an error unless ``--demo`` is given or there is no source either (the README's set-up
    command): then the bundled demo detector runs, on a generated scene when no source is given.
    """
    models = [a for a in args.inputs if a.lower().endswith(".onnx")]
    sources = [a for a in args.inputs if not a.lower().endswith(".onnx")] + list(args.source)
    if args.model:
        models = [args.model] + [m for m in models if m != args.model]
    if len(models) > 1:
        raise UsageError(f"more than one model given ({', '.join(models)}): give one MODEL.onnx")
    other = [s for s in sources if s.lower().endswith(OTHER_MODEL_EXTS)]
    if other and not models:
        raise UsageError(f"{other[0]}: edgerun runs ONNX models; convert it first: "
                         f"edgerun export {other[0]} -o {os.path.splitext(other[0])[0]}.onnx")
    if models and args.demo:
        raise UsageError(f"--demo runs the bundled demo detector; it conflicts with the model {models[0]}")
    if models:
        return models[0], sources, False
    if sources and not args.demo:
        raise UsageError(f"no model given for {sources[0]}: edgerun predict MODEL.onnx {sources[0]} "
                         "(or --demo to run the bundled demo detector on it)")
    if not os.path.exists(DEMO_MODEL):
        raise UsageError("no model given and the bundled demo model is not installed; "
                         "usage: edgerun predict MODEL.onnx SOURCE")
    return DEMO_MODEL, sources, True


def expand_inputs(sources: list[str]) -> list[str]:
    """Every file of every source, in order and once each; a missing source or one matching
    nothing is a ``UsageError`` (before any work)."""
    files: dict[str, str] = {}
    for s in sources:
        try:
            found = expand_source(s)
        except EdgerunError:
            raise UsageError(f"source not found: {s}; check the path (a glob needs quotes or matching files)") \
                from None
        if not found:
            raise UsageError(f"no images or videos found in {s}")
        for f in found:
            files.setdefault(os.path.abspath(f), f)
    return list(files.values())


def check_save_dir(path: str | None) -> None:
    """``--save DIR``: a folder (created now) that can be written, checked before the model runs."""
    if not path:
        return
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"--save {path}: is a file; --save takes a folder for the annotated images "
                         "(e.g. --save runs/predict)")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--save {path}: cannot create the folder ({exc.strerror}); choose another path") from None
    if not os.access(path, os.W_OK):
        raise UsageError(f"--save {path}: folder is not writable; choose another path")


def check_imgsz(det, imgsz: list[int] | None, model: str) -> None:
    """``--imgsz`` only for models whose input size is not fixed (else ONNX Runtime refuses it)."""
    if not imgsz:
        return
    if len(imgsz) > 2 or min(imgsz) <= 0:
        raise UsageError(f"--imgsz {' '.join(map(str, imgsz))}: expected one or two positive sizes (H [W])")
    shape = det.session.inputs[0].shape
    hw = tuple(shape[2:4] if det.spec.layout == "nchw" else shape[1:3])
    want = tuple(imgsz * 2 if len(imgsz) == 1 else imgsz)
    if all(isinstance(d, int) for d in hw) and hw != want:
        raise UsageError(f"--imgsz {' '.join(map(str, imgsz))}: {model} has a fixed {hw[0]}x{hw[1]} input; "
                         "omit --imgsz (or export the model with a dynamic input size)")


def run_predict(args) -> int:
    model, sources, demo = resolve_inputs(args)
    if not os.path.isfile(model):
        raise UsageError(f"model file not found: {model}")
    files = expand_inputs(sources) if sources else []
    check_save_dir(args.save)
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
    check_imgsz(det, args.imgsz, model)
    if not files:
        from ..demo import sample_scene_path
        files = [sample_scene_path()]
    return _run(det, files, args)


def _frames(files: list[str]) -> Iterator[Frame]:
    """Every frame of every file (already expanded: a dangling link is an error frame, not a
    missing source); an unreadable file is one Frame with ``error``."""
    for f in files:
        video = os.path.splitext(f)[1].lower() in VIDEO_EXTS
        if video and os.path.exists(f):
            yield from iter_frames(f)
            continue
        try:
            yield Frame(f, 0, read_image(f) if not video else None,
                        None if not video else f"{f}: cannot read file (a dangling link?)")
        except ImageError as exc:
            yield Frame(f, 0, None, str(exc))


def _total(files: list[str]) -> int | None:
    """Frames to come: one per image, the frame count of each video (None if one is unknown)."""
    import cv2

    n = 0
    for f in files:
        if os.path.splitext(f)[1].lower() not in VIDEO_EXTS:
            n += 1
            continue
        cap = cv2.VideoCapture(f)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        cap.release()
        if count <= 0:
            return None
        n += count
    return n


def _run(det, files: list[str], args) -> int:
    names = det.spec.names
    failures = frames = 0
    saver = _Saver(args.save, det.spec.names) if args.save else None
    # per-frame lines on a terminal are progress enough; a bar (TTY stderr) or periodic lines
    # (piped stderr) when stdout goes elsewhere
    progress = Progress("predict", _total(files), "frame", enabled=not _isatty(sys.stdout))
    first = compile_notice()
    t0 = time.perf_counter()
    try:
        for frame in _frames(files):
            frames += 1
            result = None
            if frame.error is None:
                try:
                    result = det.run(frame.image)
                except EdgerunError as exc:
                    frame.error = f"{frame.source}: {exc}"
            if frame.error:
                failures += 1
                print(f"edgerun: error: {frame.error}", file=sys.stderr)
            if args.json:
                print(json.dumps(frame_record(frame, result, names)), flush=True)
            elif result is not None:
                note = " [includes the one-time kernel compilation]" if first else ""
                print(_summary(frame, result, names) + note)
                first = False
            if saver is not None and result is not None:
                saver.save(frame, result)
            progress.update(1, errors=failures)
    finally:
        if saver is not None:
            saver.close()
        progress.close()
    dt = time.perf_counter() - t0
    print(f"{frames} frame(s) from {len(files)} file(s), {failures} error(s), {dt:.2f} s"
          + (f"; annotated output in {args.save}" if args.save else ""), file=sys.stderr)
    return 1 if failures else 0


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _summary(frame: Frame, det: Detections | Classifications | SemanticMask | DepthMap, names: tuple[str, ...]) -> str:
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
    if isinstance(det, DepthMap):  # the range, not the map
        r = det.to_records()
        objs = f"depth {r['min']:.3g}..{r['max']:.3g} (median {r['median']:.3g})" if r else "empty depth map"
    t = det.timings
    where = f"{frame.source}" + (f"#{frame.index}" if frame.index else "")
    return (f"{where}: {objs} ({t['preprocess']:.1f} ms pre, {t['inference']:.1f} ms inference, "
            f"{t['postprocess']:.1f} ms post)")


class _Saver:
    """Annotated images and videos in one folder, one output per input file: the input's name and
    extension (``.jpg`` for formats OpenCV writes badly), ``_2``, ``_3``... on a collision."""

    def __init__(self, out_dir: str, names: tuple[str, ...]):
        self.out_dir, self.names = out_dir, names
        self.paths: dict[str, str] = {}  # input file -> output file
        self.used: set[str] = set()
        self.writers: dict[str, Any] = {}

    def path_for(self, source: str) -> str:
        if source not in self.paths:
            base, ext = os.path.splitext(os.path.basename(source))
            ext = ".mp4" if ext.lower() in VIDEO_EXTS else ext if ext.lower() in SAVE_EXTS else ".jpg"
            name, k = base + ext, 1
            while name.lower() in self.used:
                k += 1
                name = f"{base}_{k}{ext}"
            self.used.add(name.lower())
            self.paths[source] = os.path.join(self.out_dir, name)
        return self.paths[source]

    def save(self, frame: Frame, result) -> None:
        import cv2

        from ..tasks.dispatch import annotate

        img = frame.image.copy()
        annotate(img, result, self.names)
        path = self.path_for(frame.source)
        if os.path.splitext(frame.source)[1].lower() in VIDEO_EXTS:
            w = self.writers.get(frame.source)
            if w is None:
                w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), video_fps(frame.source),
                                    (img.shape[1], img.shape[0]))
                if not w.isOpened():
                    raise UsageError(f"--save: cannot create the video {path}")
                self.writers[frame.source] = w
            w.write(img)
        elif not cv2.imwrite(path, img):
            raise UsageError(f"--save: cannot write {path} (disk full or not writable?)")

    def close(self) -> None:
        for w in self.writers.values():
            w.release()

