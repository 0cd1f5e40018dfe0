"""edgerun vs other CPU runtimes on the same model, speed and accuracy side by side in one run (issue 25).

    python benchmarks/bench_runtimes.py [--model M.onnx] [--images a.jpg b.jpg] [--rounds 3]
        [--iterations 15] [--val DIR | --no-map] [--calib DIR] [--int8 FILE] [--fp16 FILE] [--json F]

Rows (each skipped with a one-line reason when its package is missing: peers live in a benchmark venv,
see benchmarks/README.md, never in edgerun's runtime dependencies):

- ``ORT <variant>``: a bare ``Session.run`` (edgerun's session, default spin) on the tensor edgerun's
  letterbox made of the photo. Variants (``VARIANTS``): the fp32 file itself; ``fp32 raw`` (``edgerun
  export --head raw``: the DFL decode tail cut out, edgerun decodes); ``fp16``; ``int8`` (``edgerun
  export --int8`` as it ships: head "auto", i.e. raw for DFL detectors); ``int8 graph`` (int8 with the
  decode tail kept in the graph, as before the raw head). All are ``finish_onnx`` results of the fp32
  model, built once into ``--workdir`` (int8: calibrated on ``--calib``, gated there), or the files given
  with ``--fp16``/``--int8``;
- ``OpenVINO f32`` (``INFERENCE_PRECISION_HINT=f32``) and ``OpenVINO default`` (its own precision on
  this CPU, named in the row: bf16 where the CPU has AVX-512 BF16/AMX) on the fp32 file, ``OpenVINO
  default, raw file`` on the ``fp32 raw`` file (OpenVINO given the same cut graph), and ``OpenVINO int8
  file``; 2 threads (``--threads``), latency hint;
- ``NCNN fp32`` (fp16 storage/arithmetic off) and ``NCNN default`` (its defaults: fp16 storage and
  arithmetic where the CPU has them) on the pnnx conversion of the fp32 ONNX (pnnx takes ONNX);
- ``edgerun detect <variant>``: ``Detector.detect`` on the decoded photo, boxes out;
- ``OpenVINO default + edgerun pre/post`` (and ``..., raw file``): the same frame-in, boxes-out pipeline
  with OpenVINO's default precision doing the inference (the comparison issue 25's first target names;
  the target is judged against the faster of the two);
- ``Ultralytics predict fp32``: ``YOLO(onnx).predict`` on the fp32 file.

Timing: every row runs in blocks (``--warmup`` untimed calls, ``--iterations`` timed calls, a pause), the
block sequence repeated ``--rounds`` times in alternating order (``bench_peers.run_blocks``); a row's
figure is its best block median, its ratio is ``ORT fp32``'s figure over it (> 1 = faster). The
``detect() / bare`` target is judged on pairs (``--paired`` N): each file's Detector alternates ``detect``
and a bare run of its own session call by call, and the ratio is the median of the N per-pair ratios (blocks
minutes apart on a shared VM differed by up to 30% for the same row); the stage medians go beside it.
Accuracy beside every row: box F1 vs ``edgerun detect fp32`` on the photos (IoU >= 0.9, same class,
the export gate's rule: ``export.verify.add_agreement``), and coco128 mAP50-95 (``export.val.coco_map_fns``,
score 0.001, NMS IoU 0.7) of every inference path that changed precision or runtime; a raw tensor row is
decoded by edgerun's post-processing. Ultralytics' mAP is not computed (same fp32 file, its own pipeline).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench_peers / _shared: reused, not duplicated

from _shared import SHARED  # noqa: E402

MODEL = "yolov8n_640_fp32dq.onnx"
IMAGES = ("bus.jpg", "zidane.jpg")
# variant -> finish_onnx precision and head ("fp32" is the source file itself)
VARIANTS = {"fp32": ("fp32", "graph"), "fp32 raw": ("fp32", "raw"), "fp16": ("fp16", "graph"),
            "int8": ("int8", "auto"), "int8 graph": ("int8", "graph")}
PRECISIONS = tuple(VARIANTS)
OV_PIPELINES = ("OpenVINO default + edgerun pre/post", "OpenVINO default, raw file + edgerun pre/post")
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "f16c",
         "asimddp", "fphp", "asimdhp", "i8mm", "bf16")
TARGETS = {"int8 detect vs OpenVINO default + same pre/post": 1.10, "int8 detect vs Ultralytics fp32": 2.0,
           "detect / bare": 1.05, "int8 mAP50-95 drop": 0.01}


class Unavailable(Exception):
    """A peer cannot run here (package missing, conversion failed): its rows become skip lines."""


# -- machine ----------------------------------------------------------------------------------------
def cpu_flags() -> dict[str, bool]:
    """The instruction-set flags that decide int8/fp16/bf16 speed (x86 and Arm names)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    have = set()
    for line in text.splitlines():
        if line.lower().startswith(("flags", "features")):
            have.update(line.split(":", 1)[1].split())
    return {f: f in have for f in FLAGS if f in have or not f.startswith(("asimd", "fphp", "i8mm", "bf16"))}


# -- model files ----------------------------------------------------------------------------------------
def prepare_models(model: str, precisions: list[str], workdir: Path, calib: str | None, photos: list[str],
                   given: dict[str, str | None], threads: int) -> tuple[dict[str, str], dict[str, str]]:
    """{variant: ONNX path} built with ``finish_onnx`` (cached in ``workdir``), and skip reasons."""
    from edgerun.export.finish import finish_onnx

    paths, skipped = {"fp32": model}, {}
    workdir.mkdir(parents=True, exist_ok=True)
    for v in precisions:
        if v == "fp32":
            continue
        if given.get(v):
            paths[v] = given[v]
            continue
        p, head = VARIANTS[v]
        out = workdir / f"{Path(model).stem}_{p}_{head}.onnx"
        if out.exists() and out.stat().st_mtime >= Path(model).stat().st_mtime:
            paths[v] = str(out)
            continue
        if p == "int8" and not calib:
            skipped[v] = "no --calib folder (and no --int8 FILE)"
            continue
        t0 = time.perf_counter()
        try:
            rep = finish_onnx(model, str(out), precision=p, calib=calib if p == "int8" else None,
                              verify_images=None if p == "int8" else photos, threads=threads, head=head)
        except Exception as exc:  # noqa: BLE001 - a refused export is a table entry, not a crash
            skipped[v] = f"export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            continue
        print(f"bench_runtimes: built {out.name} in {time.perf_counter() - t0:.0f} s (gate F1 {rep['f1']:.3f}, "
              f"head {'raw' if rep.get('raw_head') else 'graph'})", file=sys.stderr)
        paths[v] = str(out)
    return paths, skipped


# -- backends: run(tensor) -> list of raw outputs shaped like ONNX Runtime's ---------------------------------
def ort_backend(path: str, threads: int) -> tuple[Callable, str]:
    from edgerun.runtime import Session

    sess = Session(path, threads=threads)
    name = sess.inputs[0].name
    return (lambda x: sess.run({name: x})), f"onnxruntime, spin {sess.spin}"


def openvino_backend(path: str, threads: int, hint: str | None) -> tuple[Callable, str]:
    """OpenVINO CPU plugin; ``hint`` "f32" forces fp32 inference, None keeps its default precision."""
    try:
        import openvino as ov
    except ImportError:
        raise Unavailable("openvino not installed (pip install openvino in the benchmark venv)") from None
    core = ov.Core()
    cfg = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    if hint:
        cfg["INFERENCE_PRECISION_HINT"] = hint
    compiled = core.compile_model(path, "CPU", cfg)
    precision = compiled.get_property("INFERENCE_PRECISION_HINT")
    precision = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(str(precision).split("'")[-2]
                                                                          if "'" in str(precision) else "",
                                                                          str(precision))
    req = compiled.create_infer_request()
    n_out = len(compiled.outputs)

    def run(x: np.ndarray) -> list[np.ndarray]:
        req.infer({0: x})
        return [req.get_output_tensor(i).data.copy() for i in range(n_out)]
    return run, f"openvino {ov.__version__.split('-')[0]}, {precision} inference"


def pnnx_convert(path: str, workdir: Path, shape: tuple[int, ...]) -> tuple[Path, Path]:
    """pnnx (it takes ONNX) -> NCNN .param/.bin in ``workdir/ncnn``, cached."""
    out = workdir / "ncnn"
    out.mkdir(parents=True, exist_ok=True)
    src = out / Path(path).name
    param, binf = src.with_suffix(".ncnn.param"), src.with_suffix(".ncnn.bin")
    if param.exists() and binf.exists() and param.stat().st_mtime >= Path(path).stat().st_mtime:
        return param, binf
    exe = shutil.which("pnnx") or str(Path(sys.executable).parent / "pnnx")
    if not Path(exe).exists():
        raise Unavailable("pnnx not installed (pip install pnnx in the benchmark venv)")
    if src.exists() or src.is_symlink():
        src.unlink()
    shutil.copyfile(path, src)
    r = subprocess.run([exe, src.name, "inputshape=[" + ",".join(map(str, shape)) + "]"], cwd=out,
                       capture_output=True, text=True, timeout=900)
    if r.returncode or not param.exists():
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise Unavailable(f"pnnx failed (exit {r.returncode}): {tail[0]}")
    return param, binf


def ncnn_backend(path: str, threads: int, workdir: Path, shape: tuple[int, ...], n_out: int,
                 fp16: bool) -> tuple[Callable, str]:
    """NCNN on the pnnx conversion; ``fp16`` False turns fp16 storage/arithmetic off (fp32 inference)."""
    try:
        import ncnn
    except ImportError:
        raise Unavailable("ncnn not installed (pip install ncnn in the benchmark venv)") from None
    param, binf = pnnx_convert(path, workdir, shape)
    net = ncnn.Net()
    net.opt.num_threads = threads
    if not fp16:
        net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = net.opt.use_fp16_packed = False
    note = f"ncnn, fp16 storage {net.opt.use_fp16_storage}, arithmetic {net.opt.use_fp16_arithmetic}"
    net.load_param(str(param))
    net.load_model(str(binf))

    def run(x: np.ndarray) -> list[np.ndarray]:
        ex = net.create_extractor()
        ex.input("in0", ncnn.Mat(np.ascontiguousarray(x[0])))
        outs = []
        for i in range(n_out):
            _, m = ex.extract(f"out{i}")
            outs.append(np.array(m)[None])
        return outs
    return run, note


# -- rows ---------------------------------------------------------------------------------------------
def build_rows(paths: dict[str, str], a: argparse.Namespace, workdir: Path) -> tuple[dict, dict[str, str]]:
    """{row name: {"kind": "tensor"|"frame", "run": fn, "note": str, "file": variant}}, skip reasons. A
    tensor row's raw outputs are decoded by the Detector of its ``file`` (the variant whose graph it ran)."""
    from edgerun.runtime import Detector

    rows: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    ref = Detector.from_path(paths["fp32"], threads=a.threads)
    shape = (1, 3, *ref.spec.input_size) if ref.spec.layout == "nchw" else (1, *ref.spec.input_size, 3)
    n_out = len(ref.session.outputs)

    def add(name: str, make: Callable[[], tuple[Callable, str]], kind: str = "tensor", file: str = "fp32") -> None:
        if a.only and not any(s.lower() in name.lower() for s in a.only):
            return
        try:
            fn, note = make()
        except Unavailable as exc:
            skipped[name] = str(exc)
            return
        except Exception as exc:  # noqa: BLE001 - a peer that cannot load this model is a table entry
            skipped[name] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            return
        rows[name] = {"kind": kind, "run": fn, "note": note, "file": file}

    for p, path in paths.items():
        add(f"ORT {p}", lambda path=path: ort_backend(path, a.threads), file=p)
    add("OpenVINO f32", lambda: openvino_backend(paths["fp32"], a.threads, "f32"))
    add("OpenVINO default", lambda: openvino_backend(paths["fp32"], a.threads, None))
    if "fp32 raw" in paths:
        add("OpenVINO default, raw file", lambda: openvino_backend(paths["fp32 raw"], a.threads, None),
            file="fp32 raw")
    if "int8" in paths:
        add("OpenVINO int8 file", lambda: openvino_backend(paths["int8"], a.threads, None), file="int8")
    add("NCNN fp32", lambda: ncnn_backend(paths["fp32"], a.threads, workdir, shape, n_out, False))
    add("NCNN default", lambda: ncnn_backend(paths["fp32"], a.threads, workdir, shape, n_out, True))
    for p, path in paths.items():
        add(f"edgerun detect {p}", lambda path=path: _detector_row(path, a.threads), "frame", p)
    for pipe, row in zip(OV_PIPELINES, ("OpenVINO default", "OpenVINO default, raw file")):
        if row in rows:
            det = Detector.from_path(paths[rows[row]["file"]], threads=a.threads)
            add(pipe, lambda det=det, row=row: (_pipeline(det, rows[row]["run"]), rows[row]["note"]), "frame",
                rows[row]["file"])
    if not a.no_ultralytics:
        add("Ultralytics predict fp32", lambda: _ultralytics_row(ref), "frame")
    return rows, skipped


def _detector_row(path: str, threads: int) -> tuple[Callable, str]:
    from edgerun.runtime import Detector

    det = Detector.from_path(path, threads=threads)
    return det.detect, f"edgerun Detector, spin {det.session.spin}"


def _pipeline(det, run: Callable) -> Callable:
    """edgerun's letterbox + ``run`` + edgerun's decode/NMS: frame in, Detections out."""
    def detect(image: np.ndarray):
        x, geo = det.preprocess(image)
        return det.postprocess([o.astype(np.float32, copy=False) for o in run(x)], geo)
    return detect


def _ultralytics_row(ref) -> tuple[Callable, str]:
    import cv2

    from edgerun.runtime.bench.peers import PeerUnavailable, UltralyticsPipeline

    threads = cv2.getNumThreads()
    try:
        pipe = UltralyticsPipeline(ref)
    except PeerUnavailable:
        raise Unavailable("ultralytics not installed (pip install ultralytics==8.4.190 torch==2.14.1)") from None
    cv2.setNumThreads(threads)  # importing ultralytics sets cv2 to 0 threads
    import ultralytics

    s, c = ref.score_threshold, ref.iou_threshold

    def detect(image: np.ndarray):
        r = pipe.model.predict(image, imgsz=pipe.imgsz, conf=s, iou=c, max_det=ref.max_detections, verbose=False)[0]
        b = r.boxes
        return _Boxes(b.xyxy.numpy(), b.conf.numpy(), b.cls.numpy().astype(np.int64))
    return detect, f"ultralytics {ultralytics.__version__} YOLO(onnx).predict"


class _Boxes:
    def __init__(self, xyxy: np.ndarray, confidence: np.ndarray, class_id: np.ndarray):
        self.xyxy, self.confidence, self.class_id = xyxy, confidence, class_id


def as_detect(row: dict[str, Any], dets: dict[str, Any]) -> Callable:
    """A row as frame -> boxes (tensor rows through the pre/post-processing of their file's Detector in
    ``dets``, {variant: Detector})."""
    return row["run"] if row["kind"] == "frame" else _pipeline(dets[row["file"]], row["run"])


def _detectors(paths: dict[str, str], threads: int, **kw: Any) -> dict[str, Any]:
    from edgerun.runtime import Detector

    return {v: Detector.from_path(p, threads=threads, **kw) for v, p in paths.items()}


def paired(paths: dict[str, str], photos: dict[str, np.ndarray], threads: int, calls: int) -> dict[str, dict]:
    """``detect()`` against a bare run of the same Detector's session, call by call (``interleaved``: the
    order alternates), so that the VM's slow phases hit both: {image: {variant: medians of detect, bare and
    detect's stages (ms), and the median of the per-pair ratios}}."""
    from edgerun.runtime import Detector
    from edgerun.runtime.bench import interleaved
    from edgerun.runtime.tasks.base import STAGES

    out: dict[str, dict] = {}
    for p, path in paths.items():
        det = Detector.from_path(path, threads=threads)
        for name, img in photos.items():
            tensor = det.preprocess(img)[0].copy()
            timings: list[dict[str, float]] = []
            res = interleaved({"detect": lambda: timings.append(det.detect(img).timings),
                               "bare": lambda: det.infer(tensor)}, calls, warmup=3, keep_samples=True)
            d, b = np.array(res["detect"]["samples_ms"]), np.array(res["bare"]["samples_ms"])
            out.setdefault(name, {})[p] = {
                "detect_ms": res["detect"]["median"], "bare_ms": res["bare"]["median"],
                "pair_ratio": float(np.median(d / b)),
                **{f"{k}_ms": float(np.median([t[k] for t in timings[-calls:]])) for k in STAGES}}
    return out


# -- accuracy -----------------------------------------------------------------------------------------
def photo_f1(rows: dict, photos: dict[str, np.ndarray], paths: dict[str, str], threads: int) -> dict[str, dict]:
    """Box agreement of every row with ``edgerun detect fp32`` on the photos (the export gate's rule)."""
    from edgerun.export.verify import Agreement, add_agreement

    dets = _detectors(paths, threads)
    det = dets["fp32"]
    refs = {k: det.detect(im) for k, im in photos.items()}
    out = {}
    for name, row in rows.items():
        fn, agg = as_detect(row, dets), Agreement()
        for k, im in photos.items():
            add_agreement(agg, k, im.shape[:2], refs[k], fn(im), solid=det.score_threshold + 0.05,
                          nms_near=det.iou_threshold - 0.02)
        out[name] = {"f1": round(agg.f1, 4), "ref_boxes": agg.ref_boxes, "boxes": agg.new_boxes,
                     "matched": agg.matched}
    return out


def map_rows(rows: dict, paths: dict[str, str], folder: str, threads: int) -> dict[str, dict]:
    """coco128-style mAP of each inference path; detect rows share their ORT file's figure, OpenVINO +
    pre/post rows their OpenVINO row's."""
    from edgerun.export.val import coco_map_fns

    dets = _detectors(paths, threads, score_threshold=0.001, iou_threshold=0.7)
    shared = {f"edgerun detect {v}": f"ORT {v}" for v in paths}
    shared.update(zip(OV_PIPELINES, ("OpenVINO default", "OpenVINO default, raw file")))
    fns = {}
    for name, row in rows.items():
        if name.startswith("Ultralytics") or shared.get(name) in rows:
            continue  # Ultralytics: same fp32 file (its own pipeline); the others: the figure of the row named
        fns[name] = dets[row["file"]].detect if name.startswith("edgerun detect ") else as_detect(row, dets)
    res = coco_map_fns(fns, folder)
    for name in rows:
        if shared.get(name) in res:
            res[name] = res[shared[name]]
    return res


# -- report -------------------------------------------------------------------------------------------
def table(report: dict[str, Any]) -> list[str]:
    imgs = report["images"]
    head = "| path | " + " | ".join(f"{i} ms (x ORT fp32)" for i in imgs) + " | F1 vs fp32 (photos) | mAP50-95 (d vs fp32) | note |"
    lines = [head, "|---|" + "---|" * (len(imgs) + 3)]
    ref_map = (report.get("map") or {}).get("ORT fp32", {}).get("map50_95")
    for name, row in report["rows"].items():
        cells = []
        for i in imgs:
            t = report["timing"][i].get(name)
            cells.append(f"{t['best_median_ms']:.1f} ({t['speedup']:.2f}x)" if t else "-")
        f1 = report["f1"].get(name)
        m = (report.get("map") or {}).get(name)
        mtxt = (f"{m['map50_95']:.3f} ({m['map50_95'] - ref_map:+.3f})" if m and ref_map is not None
                else ("n/a (same fp32 file)" if name.startswith("Ultralytics") else "-"))
        ftxt = f"{f1['f1']:.3f} ({f1['matched']}/{f1['ref_boxes']}:{f1['boxes']})" if f1 else "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ftxt} | {mtxt} | {row['note']} |")
    for name, why in report["skipped"].items():
        lines.append(f"| {name} | " + " | ".join("skipped" for _ in imgs) + f" | - | - | {why} |")
    return lines


def paired_table(pr: dict[str, dict]) -> list[str]:
    """detect() vs bare, call by call: medians (ms) and the median per-pair ratio."""
    lines = ["", "| file | image | bare run | detect() | preprocess | inference | postprocess | detect / bare (paired) |",
             "|---|---|---|---|---|---|---|---|"]
    for img, per in pr.items():
        for p, v in per.items():
            lines.append(f"| {p} | {img} | {v['bare_ms']:.2f} | {v['detect_ms']:.2f} | {v['preprocess_ms']:.2f} | "
                         f"{v['inference_ms']:.2f} | {v['postprocess_ms']:.2f} | {v['pair_ratio']:.3f} |")
    return lines


def target_lines(report: dict[str, Any]) -> list[str]:
    out = []

    def line(what: str, value: float | None, bound: float, higher: bool) -> None:
        if value is None:
            out.append(f"- {what}: not measured (a row is missing)")
            return
        ok = value >= bound if higher else value <= bound
        out.append(f"- {what}: {value:.3f} ({'>=' if higher else '<='} {bound}: {'met' if ok else 'MISSED'})")

    for img, t in report["timing"].items():
        ms = {k: v["best_median_ms"] for k, v in t.items()}
        i8 = ms.get("edgerun detect int8")
        ovs = [ms[k] for k in OV_PIPELINES if k in ms]
        ov, ul = (min(ovs) if ovs else None), ms.get("Ultralytics predict fp32")
        line(f"{img}: fastest OpenVINO default + same pre/post / edgerun int8 detect", ov / i8 if ov and i8 else None,
             TARGETS["int8 detect vs OpenVINO default + same pre/post"], True)
        line(f"{img}: Ultralytics fp32 / edgerun int8 detect", ul / i8 if ul and i8 else None,
             TARGETS["int8 detect vs Ultralytics fp32"], True)
        pr = (report.get("paired") or {}).get(img, {})
        for p in PRECISIONS:
            d, b = ms.get(f"edgerun detect {p}"), ms.get(f"ORT {p}")
            if p in pr:  # the call-by-call pairs: the same session, the VM's slow phases on both sides
                line(f"{img}: detect {p} / bare ORT {p} (paired)", pr[p]["pair_ratio"], TARGETS["detect / bare"], False)
            elif d and b:
                line(f"{img}: detect {p} / bare ORT {p}", d / b, TARGETS["detect / bare"], False)
    m = report.get("map") or {}
    if "ORT int8" in m and "ORT fp32" in m:
        line("coco128 mAP50-95 drop int8 vs fp32", m["ORT fp32"]["map50_95"] - m["ORT int8"]["map50_95"],
             TARGETS["int8 mAP50-95 drop"], False)
    return out


def resolve(name: str, folder: str) -> str:
    p = Path(name)
    return str(p if (os.sep in name or p.exists()) else SHARED / folder / name)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from edgerun.runtime import cpu_budget

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=MODEL, help="fp32 ONNX detector: a name under ../shared/models or a path")
    ap.add_argument("--images", nargs="+", default=list(IMAGES), help="names under ../shared/images or paths")
    ap.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    ap.add_argument("--fp16", help="an existing fp16 file of the model (else built with finish_onnx)")
    ap.add_argument("--int8", help="an existing int8 file of the model (else built from --calib)")
    ap.add_argument("--calib", default=str(SHARED / "datasets" / "coco128" / "images" / "train2017"),
                    help="calibration images for the int8 build")
    ap.add_argument("--val", default=str(SHARED / "datasets" / "coco128" / "images" / "train2017"), help="YOLO-labelled folder for mAP")
    ap.add_argument("--no-map", action="store_true", help="leave the mAP column out")
    ap.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "edgerun-bench-runtimes"),
                    help="where built fp16/int8/NCNN files are cached")
    ap.add_argument("--threads", type=int, default=cpu_budget(), help="threads for every runtime")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--pause", type=float, default=0.2)
    ap.add_argument("--only", nargs="+", help="rows whose name contains one of these words")
    ap.add_argument("--no-ultralytics", action="store_true")
    ap.add_argument("--paired", type=int, default=60, help="detect() vs bare pairs per file and photo (0: none)")
    ap.add_argument("--json", help="write the full report here")
    from bench_peers import parse_timing_args

    return parse_timing_args(ap, argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    import cv2

    from bench_peers import loadavg, run_blocks

    from edgerun.runtime.bench import machine_record

    model = resolve(a.model, "models")
    images = [resolve(i, "images") for i in a.images]
    missing = [p for p in [model, *images] if not Path(p).exists()]
    if missing:
        print(f"bench_runtimes: absent, nothing measured: {', '.join(missing)}", file=sys.stderr)
        return 0
    cv2.setNumThreads(a.threads)
    workdir = Path(a.workdir)
    calib = a.calib if Path(a.calib).is_dir() else None
    paths, skipped = prepare_models(model, a.precisions, workdir, calib, images,
                                    {"fp16": a.fp16, "int8": a.int8}, a.threads)
    rows, peer_skips = build_rows(paths, a, workdir)
    skipped = {**{f"ORT {k}": v for k, v in skipped.items()}, **peer_skips}
    for name, why in skipped.items():
        print(f"bench_runtimes: skipped {name}: {why}", file=sys.stderr)
    photos = {Path(p).name: cv2.imread(p) for p in images}
    report: dict[str, Any] = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                              "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
                              "model": Path(model).name, "files": paths, "images": list(photos),
                              "threads": a.threads, "cpu_flags": cpu_flags(), "load_avg_start": loadavg(),
                              "rows": {k: {"kind": v["kind"], "note": v["note"], "file": v["file"]}
                                       for k, v in rows.items()},
                              "skipped": skipped, "timing": {}}
    from edgerun.runtime import Detector

    det = Detector.from_path(paths["fp32"], threads=a.threads)
    for name, img in photos.items():
        tensor = det.preprocess(img)[0].copy()
        fns = {k: ((lambda r=r: r["run"](tensor)) if r["kind"] == "tensor" else (lambda r=r: r["run"](img)))
               for k, r in rows.items()}
        res = run_blocks(fns, rounds=a.rounds, iterations=a.iterations, warmup=a.warmup, pause=a.pause)
        base = res.get("ORT fp32", {}).get("best_median_ms")
        for v in res.values():
            v["speedup"] = round(base / v["best_median_ms"], 4) if base else float("nan")
            v.pop("ratio_to_best_bare", None)
        report["timing"][name] = res
    if a.paired:
        report["paired"] = paired({p: paths[p] for p in paths if f"edgerun detect {p}" in rows}, photos,
                                  a.threads, a.paired)
    report["load_avg_after_timing"] = loadavg()
    report["f1"] = photo_f1(rows, photos, paths, a.threads)
    report["machine"] = machine_record([a.threads])
    if not a.no_map and Path(a.val).is_dir():
        show(report, a)  # speed first: the mAP pass takes minutes
        try:
            report["map"] = map_rows(rows, paths, a.val, a.threads)
        except Exception as exc:  # noqa: BLE001 - the timings stay reported
            report["map_error"] = f"{type(exc).__name__}: {exc}"
            print(f"bench_runtimes: mAP not measured: {report['map_error']}", file=sys.stderr)
    report["load_avg_end"] = loadavg()
    show(report, a)
    return 0


def show(report: dict[str, Any], a: argparse.Namespace) -> None:
    """Print the table and the targets; write the JSON (again, once mAP is in)."""
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in report["cpu_flags"].items())
    print(f"{report['date']}  {report['machine']['cpu_model']}  ({flags})")
    print(f"load average start {report['load_avg_start']}, after timing {report['load_avg_after_timing']}, "
          f"end {report.get('load_avg_end', '(mAP pass running)')}; threads {a.threads}; {a.rounds} rounds x "
          f"{a.iterations} runs")
    print("\n".join(table(report)))
    if report.get("paired"):
        print("\n".join(paired_table(report["paired"])))
    print("\n".join(target_lines(report)), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
