"""Finish an existing ONNX detector (e.g. from ``yolo export``) into a verified edgerun model.

``finish_onnx`` writes edgerun's metadata schema (keeping the source's metadata props), optionally
converts to fp16 or int8 static QDQ (see ``quant.py``), then runs the source and the result through
the same edgerun ``Detector`` on real images and refuses the result (``ExportError``, no file
written) when the boxes disagree. The result is staged next to ``out`` and moved into place with
``os.replace`` only after it passed. torch is never imported here.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Any, Callable, Sequence

import numpy as np

from . import quant
from .torch_export import ExportError, spec_diff
from .verify import Agreement, compare_detectors, default_scenes, format_table, image_files

__all__ = ["finish_onnx", "ExportError", "MIN_F1", "verify_set"]

PRECISIONS = ("fp32", "fp16", "int8")
MIN_F1 = {"fp32": 0.99, "fp16": 0.99, "int8": 0.9}
log = logging.getLogger("edgerun")


def finish_onnx(src: str, out: str, *, precision: str = "fp32", calib: str | None = None,
                verify_images: str | Sequence[str] | None = None, imgsz: int | Sequence[int] | None = None,
                force: bool = False, min_f1: float | None = None, calib_max: int = 200,
                exclude_head: bool = True, threads: int | None = None,
                progress: Callable[[int, int], None] | None = None, **spec_overrides: Any) -> dict[str, Any]:
    """Convert/annotate ``src`` (ONNX detector) into ``out`` and verify it; returns the report.

    ``precision``: "fp32" (metadata only), "fp16" (fp16 weights/compute, float32 I/O) or "int8"
    (static QDQ calibrated on the images in ``calib``, at most ``calib_max``, head tail in float).
    ``verify_images``: a directory or a list of image files (default: generated demo scenes).
    ``imgsz``/``spec_overrides``: ModelSpec fields for models whose metadata is missing or wrong.
    Raises ``ExportError`` when box agreement F1 (IoU >= 0.9, same class) is below ``min_f1``
    (default ``MIN_F1[precision]``) unless ``force``; ``ModelError`` for unusable source files.
    """
    from edgerun.runtime.tasks.detector import Detector

    t0 = time.perf_counter()
    if precision not in PRECISIONS:
        raise ExportError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    calib_files = _calib_files(precision, calib, calib_max)
    images = verify_set(verify_images)
    if imgsz is not None:
        spec_overrides["input_size"] = imgsz
    ref = Detector.from_path(str(src), threads=threads, **spec_overrides)  # checks the file first
    staged = _stage_path(out)
    try:
        notes = _build(str(src), staged, ref, precision, calib_files, exclude_head, progress)
        report = _check(ref, staged, images, threads, precision, min_f1)
        report.update(notes, source=os.path.abspath(src), path=os.path.abspath(out), precision=precision,
                      bytes=os.path.getsize(staged), source_bytes=os.path.getsize(src),
                      seconds=round(time.perf_counter() - t0, 2))
        report["table"] = _table(report)
        if not report["ok"] and not force:
            raise ExportError(f"{out}: verification failed ({'; '.join(report['problems'])}); nothing "
                              f"written (force=True / --force keeps it anyway)\n{report['table']}")
        report["forced"] = not report["ok"]
        os.replace(staged, out)
        return report
    finally:
        if os.path.exists(staged):
            os.remove(staged)


def _calib_files(precision: str, calib: str | None, calib_max: int) -> list[str]:
    if precision != "int8":
        return []
    if calib is None:
        raise ExportError("int8 needs calibration images: pass calib=DIR (--calib DIR), e.g. 50-200 "
                          "images like the ones the model will see")
    try:
        files = image_files(str(calib), "calib")
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    return files[:max(1, int(calib_max))]


def verify_set(verify_images: str | Sequence[str] | None) -> list[tuple[str, np.ndarray]]:
    """The verification gate's images: (name, BGR) of the given files, else generated scenes."""
    from edgerun.runtime.sources import read_image

    if verify_images is None:
        return default_scenes()
    try:
        files = image_files(verify_images, "verify_images") if isinstance(verify_images, (str, os.PathLike)) \
            else [str(f) for f in verify_images]
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if not files:
        raise ExportError("verify_images: the list of images is empty")
    return [(os.path.basename(f), _read(read_image, f, "verify_images")) for f in files]


def _read(read_image: Callable, path: str, what: str) -> np.ndarray:
    try:
        return read_image(path)
    except (OSError, ValueError) as exc:
        raise ExportError(f"{what}: cannot read {path}: {exc}") from None


def _stage_path(out: str) -> str:
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise ExportError(f"output folder {folder!r} does not exist")
    fd, path = tempfile.mkstemp(prefix=".edgerun-export-", suffix=".onnx", dir=folder)
    os.close(fd)
    return path


def _build(src: str, staged: str, ref, precision: str, calib_files: list[str], exclude_head: bool,
           progress: Callable[[int, int], None] | None) -> dict[str, Any]:
    """Write the converted model with edgerun metadata to ``staged``; returns what was done."""
    import onnx

    model = onnx.load(src)
    if precision != "fp32" and (quant.is_quantized(model) or ref.spec.input_dtype == "float16"):
        raise ExportError(f"{src}: the source is already reduced precision (quantization ops or float16 "
                          f"input); {precision} needs the fp32 model (re-export it without --half/--int8)")
    model, slimmed = _maybe_slim(model)
    notes: dict[str, Any] = {"slimmed": slimmed, "excluded_nodes": [], "calib_images": len(calib_files)}
    if precision == "fp16":
        model = quant.to_fp16(model)
    elif precision == "int8":
        notes["excluded_nodes"] = quant.head_tail_nodes(model) if exclude_head else []
        model = _quantize(model, ref, calib_files, notes["excluded_nodes"], progress)
    _set_metadata(model, ref.spec)
    onnx.save(model, staged)
    notes["guessed_written"] = list(ref.spec.guessed)
    return notes


def _maybe_slim(model):
    try:
        import onnxslim
    except ImportError:
        return model, False
    return onnxslim.slim(model), True


def _quantize(model, ref, calib_files: list[str], exclude: list[str], progress) -> Any:
    import onnx

    from edgerun.runtime.sources import read_image

    feed = quant.ImageFeed(calib_files, lambda p: _read(read_image, p, "calib"),
                           lambda im: ref.preprocess(im)[0], ref.spec.input_name, progress)
    with tempfile.TemporaryDirectory(prefix="edgerun-int8-") as tmp:
        fp32, q = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
        onnx.save(model, fp32)
        quant.to_int8(fp32, q, feed, exclude)
        return onnx.load(q)


def _set_metadata(model, spec) -> None:
    """edgerun's schema under ``edgerun``; every other existing prop (Ultralytics') kept."""
    props = {p.key: p.value for p in model.metadata_props}
    props.update(spec.to_metadata())
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)


def _check(ref, staged: str, images, threads: int | None, precision: str, min_f1: float | None
           ) -> dict[str, Any]:
    """Reload ``staged`` the way users will (metadata only, no overrides) and compare with ``ref``."""
    from edgerun.runtime.tasks.detector import Detector

    new = Detector.from_path(staged, threads=ref.session.threads if threads is None else threads)
    diff = spec_diff(ref.spec, new.spec)
    agreement: Agreement = compare_detectors(ref, new, images)
    threshold = MIN_F1[precision] if min_f1 is None else float(min_f1)
    problems = [f"metadata does not round-trip: {diff}"] if diff else []
    if agreement.f1 < threshold:
        problems.append(f"box agreement F1 {agreement.f1:.3f} < {threshold:g} (IoU >= 0.9, same class)")
    if agreement.ref_boxes < 5:
        log.warning("edgerun export: only %d reference boxes on the verification images; pass images "
                    "like the model's real input (--verify-images) for a meaningful check", agreement.ref_boxes)
    return {**agreement.as_dict(), "min_f1": threshold, "spec_roundtrip": not diff, "ok": not problems,
            "problems": problems, "per_image": agreement.per_image}


def _table(r: dict[str, Any]) -> str:
    rows = [("precision", r["precision"]),
            ("size", f"{r['bytes'] / 1e6:.2f} MB ({r['bytes'] / r['source_bytes']:.2f}x source)"),
            ("raw max abs err", f"{r['max_abs_error']:.4g} (rel {r['max_rel_error']:.3g})"),
            ("boxes src/new", f"{r['ref_boxes']}/{r['new_boxes']} on {r['images']} images "
                              f"({r['borderline_ignored']} borderline ignored)"),
            ("F1 @IoU0.9", f"{r['f1']:.3f} (min {r['min_f1']:g}) {'PASS' if r['ok'] else 'FAIL'}"),
            ("metadata", "round-trips" if r["spec_roundtrip"] else "DIFFERS")]
    if r["precision"] == "int8":
        rows.append(("int8", f"{r['calib_images']} calibration images, {len(r['excluded_nodes'])} "
                             "head-tail nodes kept float"))
    rows.append(("onnxslim", "applied" if r["slimmed"] else "not installed, skipped"))
    return format_table(rows)
