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

__all__ = ["finish_onnx", "ExportError", "MIN_F1", "split_calibration", "umask_mode"]

PRECISIONS = ("fp32", "fp16", "int8")
HEAD_MODES = ("auto", "graph", "raw")
MIN_F1 = {"fp32": 0.99, "fp16": 0.99, "int8": 0.9}
FLOAT_NODES = ("fixed", "search")
log = logging.getLogger("edgerun")


def finish_onnx(src: str, out: str, *, precision: str = "fp32", calib: str | None = None,
                verify_images: str | Sequence[str] | None = None, imgsz: int | Sequence[int] | None = None,
                force: bool = False, min_f1: float | None = None, calib_max: int = 32,
                exclude_head: bool = True, threads: int | None = None,
                progress: Callable[[int, int], None] | None = None, require_verified: bool | None = None,
                val: str | None = None, float_nodes: str | Sequence[str] = "fixed", qdq: dict[str, Any] | None = None,
                search_trials: int = 10, head: str = "auto", **spec_overrides: Any) -> dict[str, Any]:
    """Convert/annotate ``src`` (ONNX detector) into ``out`` and verify it; returns the report.

    ``precision``: "fp32" (metadata only), "fp16" (fp16 weights/compute, float32 I/O) or "int8"
    (static QDQ calibrated on at most ``calib_max`` of the images in ``calib``, head tail in float;
    unreadable calibration images are skipped and counted).
    ``verify_images``: a directory or a list of image files. ``None``: for int8, calibration images
    held out of the calibration; otherwise generated demo scenes. An empty list: no verification.
    When the source model finds nothing on the verification images the report says "not verified"
    (``report["verified"]`` False): that refuses the file only when a gate was asked for
    (``require_verified``; default: ``verify_images`` or ``min_f1`` given) and not ``force``.
    ``val``: a YOLO-labelled image folder; the report gets COCO mAP50-95/mAP50 of source and result
    (``export.val``, faster-coco-eval or pycocotools), computed once the gate passed.
    ``float_nodes`` (int8): "fixed" keeps the stem block, decode tail and last head convs float; "search"
    measures which of those groups must stay float and keeps the fastest set that passes the gate
    (``export.int8search``, at most ``search_trials`` calibrations; the report's ``int8_search``); a list:
    exactly these node names (e.g. an earlier search's ``int8_search["float_nodes"]``).
    ``qdq`` (int8): ``quant.to_int8`` options (per_channel, activation "u8"/"s8", reduce_range).
    ``head``: "raw" cuts an Ultralytics DFL detector's decode tail out of the graph (``rawhead``; edgerun
    decodes only the anchors above the threshold: the file is then edgerun's, not Ultralytics'); "graph"
    keeps it; "auto" (default) cuts for int8 (a file only edgerun's gate vouches for anyway) when the
    graph has such a tail, and keeps it for fp32/fp16. The report's ``raw_head`` says what was cut.
    ``imgsz``/``spec_overrides``: ModelSpec fields for models whose metadata is missing or wrong.
    Raises ``ExportError`` when box agreement F1 (IoU >= 0.9, same class) is below ``min_f1``
    (default ``MIN_F1[precision]``) unless ``force``; ``ModelError`` for unusable source files.
    """
    from edgerun.runtime.tasks.detector import Detector

    t0 = time.perf_counter()
    if precision not in PRECISIONS:
        raise ExportError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    if head not in HEAD_MODES:
        raise ExportError(f"head: expected one of {HEAD_MODES}, got {head!r}")
    if isinstance(float_nodes, str) and float_nodes not in FLOAT_NODES:
        raise ExportError(f"float_nodes: expected one of {FLOAT_NODES}, got {float_nodes!r}")
    gate_asked = (verify_images is not None or min_f1 is not None) if require_verified is None \
        else bool(require_verified)
    calib_files, held_out = _calib_files(precision, calib, calib_max, holdout=verify_images is None)
    if verify_images is None and precision == "int8":
        images, verify_from = _read_images(held_out, "--calib (held out)", skip=True)
    else:
        images, verify_from = _verify_set(verify_images)
    if imgsz is not None:
        spec_overrides["input_size"] = imgsz
    ref = Detector.from_path(str(src), threads=threads, **spec_overrides)  # checks the file first
    staged = _stage_path(out)
    try:
        search = None
        if precision == "int8" and not isinstance(float_nodes, str):
            search = {"float_nodes": [str(n) for n in float_nodes]}
        elif precision == "int8" and exclude_head and float_nodes == "search":
            search = {"images": images, "min_f1": MIN_F1[precision] if min_f1 is None else float(min_f1),
                      "threads": threads, "max_trials": search_trials}
        notes = _build(str(src), staged, ref, precision, calib_files, exclude_head, progress, search, qdq, head)
        report = _check(ref, staged, images, threads, precision, min_f1, notes.pop("spec"))
        report.update(notes, float_nodes_given=not isinstance(float_nodes, str), source=os.path.abspath(src), path=os.path.abspath(out), precision=precision,
                      bytes=os.path.getsize(staged), source_bytes=os.path.getsize(src),
                      seconds=round(time.perf_counter() - t0, 2), verify_from=verify_from,
                      verify_files=[f for f, _ in images if os.path.isfile(f)])
        if not report["verified"] and gate_asked:
            report["ok"] = False
            report["problems"].append(f"not verified: the source model finds nothing on the {len(images)} "
                                      f"verification images ({verify_from}); pass images where it finds "
                                      "objects (--verify-images DIR)")
        if val is not None and (report["ok"] or force):
            from .val import coco_map
            report["val"] = coco_map({"source": str(src), "result": staged}, val, threads=threads,
                                     spec_overrides=spec_overrides)
        report["table"] = _table(report)
        if not report["ok"] and not force:
            raise ExportError(f"{out}: verification failed ({'; '.join(report['problems'])}); nothing "
                              f"written (--force keeps it anyway)\n{report['table']}")
        report["forced"] = not report["ok"]
        os.chmod(staged, umask_mode())
        os.replace(staged, out)
        return report
    finally:
        if os.path.exists(staged):
            os.remove(staged)


def umask_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file (``0o666 & ~umask``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def split_calibration(files: Sequence[str], calib_max: int, holdout: bool) -> tuple[list[str], list[str]]:
    """(calibration files, held-out verification files) from the sorted ``files``, deterministic.

    With ``holdout``, a seeded shuffle puts a quarter of the images (at most 16, none when there are
    fewer than 2) aside for verification; calibration takes at most ``calib_max`` of the rest."""
    files = list(files)
    n_hold = min(16, len(files) // 4 if len(files) >= 8 else len(files) // 2) if holdout else 0
    order = np.random.default_rng(0).permutation(len(files)) if n_hold else np.arange(len(files))
    held = sorted(files[i] for i in order[:n_hold])
    rest = [files[i] for i in sorted(order[n_hold:])]
    return rest[:max(1, int(calib_max))], held


def _calib_files(precision: str, calib: str | None, calib_max: int, holdout: bool
                 ) -> tuple[list[str], list[str]]:
    if precision != "int8":
        return [], []
    if calib is None:
        raise ExportError("int8 needs calibration images: pass --calib DIR, e.g. 32-200 images like the ones "
                          "the model will see")
    try:
        files = image_files(str(calib), "--calib")
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    return split_calibration(files, calib_max, holdout)


def _verify_set(verify_images: str | Sequence[str] | None) -> tuple[list[tuple[str, np.ndarray]], str]:
    """(images, where they came from): a directory or file list, or generated scenes for ``None``."""
    if verify_images is None:
        return default_scenes(), "generated scenes (no --verify-images)"
    is_dir = isinstance(verify_images, (str, os.PathLike))
    try:
        files = image_files(verify_images, "--verify-images") if is_dir else [str(f) for f in verify_images]
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if not files:
        return [], "no images (pass --verify-images DIR)"
    return _read_images(files, f"{verify_images}" if is_dir else "the given files", skip=False)


def _read_images(files: Sequence[str], what: str, skip: bool) -> tuple[list[tuple[str, np.ndarray]], str]:
    """Read ``files`` as (path, BGR); unreadable ones are skipped and counted (``skip``) or refused."""
    from edgerun.runtime.sources import read_image

    images, bad = [], []
    for f in files:
        try:
            images.append((f, read_image(f)))
        except (OSError, ValueError) as exc:
            if not skip:
                raise ExportError(f"--verify-images: cannot read {f}: {exc}") from None
            bad.append(f)
    note = f"{len(images)} images from {what}" + (f", {len(bad)} unreadable skipped" if bad else "")
    if bad:
        log.warning("edgerun export: %s: skipped %d unreadable image(s), e.g. %s", what, len(bad), bad[0])
    return images, note


def _stage_path(out: str) -> str:
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise ExportError(f"output folder {folder!r} does not exist")
    fd, path = tempfile.mkstemp(prefix=".edgerun-export-", suffix=".onnx", dir=folder)
    os.close(fd)
    return path


def _build(src: str, staged: str, ref, precision: str, calib_files: list[str], exclude_head: bool,
           progress: Callable[[int, int], None] | None, search: dict[str, Any] | None = None,
           qdq: dict[str, Any] | None = None, head: str = "graph") -> dict[str, Any]:
    """Write the converted model with edgerun metadata to ``staged``; returns what was done (``spec``:
    the spec written)."""
    import onnx

    model = onnx.load(src)
    if precision != "fp32" and (quant.is_quantized(model) or ref.spec.input_dtype == "float16"):
        raise ExportError(f"{src}: the source is already reduced precision (quantization ops or float16 "
                          f"input); {precision} needs the fp32 model (re-export it without --half/--int8)")
    model, slimmed = _maybe_slim(model)
    notes: dict[str, Any] = {"slimmed": slimmed, "excluded_nodes": [], "calib_images": 0, "calib_skipped": 0,
                             "raw_head": None}
    spec = ref.spec
    if head == "raw" or (head == "auto" and precision == "int8"):
        model, spec, notes["raw_head"] = _cut_head(model, ref, src, required=head == "raw")
    if precision == "fp16":
        model = quant.to_fp16(model)
    elif precision == "int8":
        if search is not None and "float_nodes" in search:
            notes["excluded_nodes"] = search["float_nodes"]
        elif search is not None:
            notes["int8_search"] = _search(model, ref, calib_files, search, qdq, spec)
            notes["excluded_nodes"] = notes["int8_search"]["float_nodes"]
        elif exclude_head:
            tail = quant.head_tail_nodes(model)
            notes["excluded_nodes"] = quant.stem_nodes(model) + tail + quant.head_output_layers(model, tail)
        model, feed = _quantize(model, ref, calib_files, notes["excluded_nodes"], progress, qdq)
        notes.update(calib_images=feed.used, calib_skipped=len(feed.skipped), calib_files=list(calib_files))
    _set_metadata(model, spec)
    onnx.save(model, staged)
    notes["guessed_written"] = list(ref.spec.guessed)
    notes["spec"] = spec
    return notes


def _cut_head(model, ref, src: str, required: bool) -> tuple[Any, Any, dict[str, Any] | None]:
    """``rawhead.cut_dfl_head`` on ``model``: (model, spec to write, what was cut). A detector without a
    DFL decode tail is kept as it is, unless ``required`` (``head="raw"``): then ``ExportError``."""
    from .rawhead import cut_dfl_head

    s = ref.spec
    cut = cut_dfl_head(model, s.input_size, s.num_classes) if (s.task, s.head) == ("detect", "yolov8") else None
    if cut is None:
        if required:
            found = ("its decode tail is not an Ultralytics DFL tail (box/class conv pairs per level into a DFL "
                     "softmax)" if s.head == "yolov8" else f"this model's head is {s.head!r} (task {s.task!r})")
            raise ExportError(f"{src}: --head raw needs an Ultralytics DFL detection head (YOLOv8/YOLO11 detect, "
                              f"not end2end); {found}")
        return model, s, None
    model, info = cut
    spec = s.replace(head="dfl", strides=info.strides, reg_max=info.reg_max)
    return model, spec, {"strides": list(info.strides), "reg_max": info.reg_max, "removed_nodes": info.removed}


def _search(model, ref, calib_files: list[str], search: dict[str, Any], qdq: dict[str, Any] | None,
            spec) -> dict[str, Any]:
    """``int8search.search_float_nodes`` on the slimmed fp32 ``model`` (written to a temporary file with
    ``spec``'s metadata, which the trial files keep, so that a cut head opens as one)."""
    import onnx

    from edgerun.runtime.sources import read_image

    from .int8search import search_float_nodes

    def feed() -> quant.ImageFeed:
        return quant.ImageFeed(calib_files, read_image, lambda im: ref.preprocess(im)[0], ref.spec.input_name)

    with tempfile.TemporaryDirectory(prefix="edgerun-int8-") as tmp:
        fp32 = os.path.join(tmp, "fp32.onnx")
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        _set_metadata(probe, spec)
        onnx.save(probe, fp32)
        return search_float_nodes(fp32, ref, feed, search["images"], min_f1=search["min_f1"],
                                  max_trials=search["max_trials"], threads=search["threads"], qdq=qdq,
                                  log=log.info)


def _maybe_slim(model):
    try:
        import onnxslim
    except ImportError:
        return model, False
    return onnxslim.slim(model), True


def _quantize(model, ref, calib_files: list[str], exclude: list[str], progress, qdq: dict[str, Any] | None = None
              ) -> Any:
    import onnx

    from edgerun.runtime.sources import read_image

    feed = quant.ImageFeed(calib_files, read_image, lambda im: ref.preprocess(im)[0], ref.spec.input_name,
                           progress)
    with tempfile.TemporaryDirectory(prefix="edgerun-int8-") as tmp:
        fp32, q = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
        onnx.save(model, fp32)
        quant.to_int8(fp32, q, feed, exclude, **(qdq or {}))
        if feed.used == 0:
            raise ExportError(f"--calib: none of the {len(calib_files)} calibration images could be read "
                              f"(e.g. {feed.skipped[0]})")
        if feed.skipped:
            log.warning("edgerun export: --calib: skipped %d unreadable image(s), e.g. %s", len(feed.skipped),
                        feed.skipped[0])
        return onnx.load(q), feed


def _set_metadata(model, spec) -> None:
    """edgerun's schema under ``edgerun``; every other existing prop (Ultralytics') kept."""
    props = {p.key: p.value for p in model.metadata_props}
    props.update(spec.to_metadata())
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)


def _check(ref, staged: str, images, threads: int | None, precision: str, min_f1: float | None,
           spec) -> dict[str, Any]:
    """Reload ``staged`` the way users will (metadata only, no overrides) and compare with ``ref``;
    ``spec``: the spec written (``ref.spec`` unless the head was cut)."""
    from edgerun.runtime.tasks.detector import Detector

    new = Detector.from_path(staged, threads=ref.session.threads if threads is None else threads)
    diff = spec_diff(spec, new.spec)
    agreement: Agreement = compare_detectors(ref, new, images)
    threshold = MIN_F1[precision] if min_f1 is None else float(min_f1)
    problems = [f"metadata does not round-trip: {diff}"] if diff else []
    if agreement.f1 < threshold:
        problems.append(f"box agreement F1 {agreement.f1:.3f} < {threshold:g} (IoU >= 0.9, same class)")
    if 0 < agreement.ref_boxes < 5:
        log.warning("edgerun export: only %d reference boxes on the verification images; pass images "
                    "like the model's real input (--verify-images) for a meaningful check", agreement.ref_boxes)
    return {**agreement.as_dict(), "min_f1": threshold, "spec_roundtrip": not diff, "ok": not problems,
            "verified": agreement.ref_boxes > 0, "problems": problems, "per_image": agreement.per_image}


def _verdict(r: dict[str, Any]) -> str:
    """PASS/FAIL only when there was something to compare; "not verified" on 0 reference boxes."""
    if not r["verified"]:
        return f"n/a: NOT VERIFIED (the source model found nothing on these images){'' if r['ok'] else ', FAIL'}"
    return f"{r['f1']:.3f} (min {r['min_f1']:g}) {'PASS' if r['ok'] else 'FAIL'}"


def _table(r: dict[str, Any]) -> str:
    rows = [("precision", r["precision"]),
            ("size", f"{r['bytes'] / 1e6:.2f} MB ({r['bytes'] / r['source_bytes']:.2f}x source)"),
            ("raw max abs err", "n/a (decode tail cut: the outputs differ by design)" if r.get("raw_head")
             else f"{r['max_abs_error']:.4g} (rel {r['max_rel_error']:.3g})"),
            ("boxes src/new", f"{r['ref_boxes']}/{r['new_boxes']} on {r['images']} images "
                              f"({r['borderline_ignored']} borderline ignored)"),
            ("verified on", r["verify_from"]),
            ("F1 @IoU0.9", _verdict(r)),
            ("metadata", "round-trips" if r["spec_roundtrip"] else "DIFFERS")]
    if r.get("raw_head"):
        h = r["raw_head"]
        rows.append(("head", f"raw DFL (reg_max {h['reg_max']}, strides {h['strides']}): {h['removed_nodes']} decode "
                             "nodes cut, edgerun decodes"))
    if r["precision"] == "int8":
        skipped = f" ({r['calib_skipped']} unreadable skipped)" if r["calib_skipped"] else ""
        how = (f"searched: {', '.join(r['int8_search']['chosen']['groups']) or 'none'}, "
               f"{len(r['int8_search']['trials'])} trials" if r.get("int8_search")
               else "given list" if r.get("float_nodes_given") else "stem block, decode tail, last head convs")
        rows.append(("int8", f"{r['calib_images']} calibration images{skipped}, {len(r['excluded_nodes'])} "
                             f"nodes kept float ({how})"))
    if r.get("val"):
        v, n = r["val"], r["val"]["images"]
        rows.append(("mAP50-95 / mAP50", f"source {v['source']['map50_95']:.3f} / {v['source']['map50']:.3f}, "
                                         f"result {v['result']['map50_95']:.3f} / {v['result']['map50']:.3f} "
                                         f"({n['labelled']} labelled images, {n['boxes']} boxes)"))
    rows.append(("onnxslim", "applied" if r["slimmed"] else "not installed, skipped"))
    return format_table(rows)
