"""The ``edgerun`` command line: predict, info, warmup, benchmark, stream, batch.

Exit status: 0 all inputs processed; 1 some inputs could not be read (each reported on stderr,
the others still processed); 2 usage error, missing/unusable model or source.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from typing import Sequence

from edgerun.kernels.errors import EdgerunError

# Ultralytics-style `key=value` arguments and their edgerun flags
_KV = {"model": None, "source": None, "conf": "--conf", "iou": "--iou", "max_det": "--max-det",
       "imgsz": "--imgsz", "save": "--save", "agnostic_nms": "--agnostic", "device": None}


def _translate_kv(argv: list[str]) -> list[str]:
    """Accept Ultralytics' habit ``model=x.onnx source=img.jpg conf=0.3`` as well as flags."""
    out, pos = [], {}
    for a in argv:
        key, sep, val = a.partition("=")
        if sep and not a.startswith("-") and key in _KV:
            if key in ("model", "source"):
                pos[key] = val
            elif key == "device":
                continue  # CPU only; accepted for compatibility
            elif key == "agnostic_nms":
                out += ["--agnostic"] if val.lower() == "true" else []
            elif key == "save" and val.lower() in ("true", "false"):
                out += ["--save", "runs/predict"] if val.lower() == "true" else []
            else:
                out += [_KV[key], val]
        else:
            out.append(a)
    head = [v for k in ("model", "source") if (v := pos.get(k))]
    return head + out if head else out


# Commands whose options and code live in their own modules: (module, entry point, help)
_COMMANDS = {
    "stream": ("edgerun.runtime.cli.stream", "run_stream",
               "pipelined detection on a video, folder, camera or URL"),
    "benchmark": ("edgerun.runtime.cli.benchmark", "run_benchmark",
                  "time each stage, cold start and peers on a model"),
    "batch": ("edgerun.runtime.batch.run", "run_cli", "detect over many files on Ray; write JSONL/Parquet"),
    "export": ("edgerun.export.cli", "run_export", "finish an ONNX model: metadata, fp16/int8, verified"),
}


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgerun", description="Fast, faithful vision inference on edge CPUs.")
    p.add_argument("-v", "--verbose", action="store_true", help="log what was inferred")
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("predict", help="detect objects in images, directories, globs or videos")
    pr.add_argument("inputs", nargs="*", help="[MODEL.onnx] [SOURCE]; no model: the bundled demo")
    pr.add_argument("--conf", type=float, help="score threshold (default 0.25; faces 0.9)")
    pr.add_argument("--iou", type=float, help="NMS IoU threshold (default 0.7; faces 0.3)")
    pr.add_argument("--max-det", type=int, default=300, help="max detections per image")
    pr.add_argument("--agnostic", action="store_true", help="class-agnostic NMS")
    pr.add_argument("--imgsz", type=int, nargs="+", help="model input size (dynamic models)")
    pr.add_argument("--threads", type=int, help="CPU threads (default: all this process may use)")
    pr.add_argument("--save", metavar="DIR", help="write annotated images/videos into DIR")
    pr.add_argument("--json", action="store_true", help="one JSON object per frame on stdout")
    pr.add_argument("--task", choices=("detect", "segment", "pose", "classify", "face", "semantic"),
                    help="override the task read from the model (default: from metadata or the graph)")
    pr.add_argument("--head", help="override the output head (yolov8, yolov5, yolox, end2end)")
    pr.add_argument("--num-classes", type=int, help="override the class count")

    info = sub.add_parser("info", help="show a model's inputs, outputs, metadata and resolved spec")
    info.add_argument("model")
    info.add_argument("--json", action="store_true")

    sub.add_parser("warmup", help="compile and cache every kernel the runtime uses")

    for name, (module, run, help_text) in _COMMANDS.items():
        sp = sub.add_parser(name, help=help_text)
        if only in (None, name):  # only the chosen command's options are built (and imported)
            importlib.import_module(module).add_arguments(sp)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "predict":
        argv = ["predict"] + _translate_kv(argv[1:])
    only = argv[0] if argv and argv[0] in ("predict", "info", "warmup", *_COMMANDS) else None
    args = _parser(only).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(message)s", stream=sys.stderr)
    try:
        if args.command == "predict":
            from .predict import run_predict
            return run_predict(args)
        if args.command == "info":
            return _info(args)
        if args.command == "warmup":
            return _warmup()
        if args.command in _COMMANDS:
            module, run, _ = _COMMANDS[args.command]
            return getattr(importlib.import_module(module), run)(args)
    except EdgerunError as exc:
        print(f"edgerun: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgerun: interrupted", file=sys.stderr)
        return 130
    return 2


def _info(args) -> int:
    from ..session import Session
    from ..spec import resolve_spec

    sess = Session(args.model)
    spec = resolve_spec(sess.metadata, sess.inputs, sess.outputs)
    report = {
        "model": os.path.abspath(args.model),
        "inputs": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype.__name__} for t in sess.inputs],
        "outputs": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype.__name__} for t in sess.outputs],
        "metadata": {k: (v if len(v) < 200 else v[:197] + "...") for k, v in sess.metadata.items()},
        "spec": spec.describe(),
        "guessed": list(spec.guessed),
        "problem": _problem(sess, spec),
    }
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return _refuse(report["problem"])
    print(f"model:   {report['model']}")
    for kind in ("inputs", "outputs"):
        for t in report[kind]:
            print(f"{kind[:-1]:7s}  {t['name']}  {t['shape']}  {t['dtype']}")
    for k, v in report["metadata"].items():
        print(f"meta     {k} = {v}")
    for k, v in report["spec"].items():
        mark = "  (guessed)" if k in spec.guessed else ""
        print(f"spec     {k} = {v}{mark}")
    return _refuse(report["problem"])


def _problem(sess, spec) -> str | None:
    """Why no task object can run this model as described (the check ``open_model`` makes), or None."""
    from ..tasks.dispatch import TASK_CLASSES

    if spec.task not in TASK_CLASSES:
        return f"{sess.path}: task {spec.task!r} is not supported yet"
    try:
        TASK_CLASSES[spec.task][0](sess, spec)
    except EdgerunError as exc:
        return str(exc)
    return None


def _refuse(problem: str | None) -> int:
    """The description is printed either way; a model nothing can run still exits 2."""
    if problem is None:
        return 0
    print(f"edgerun: error: {problem}", file=sys.stderr)
    return 2


def _warmup() -> int:
    from edgerun.kernels import cache_dir

    from ..tasks.warmup import warmup

    t0 = time.perf_counter()
    n = warmup()
    print(f"edgerun warmup: {n} kernel signatures ready in {time.perf_counter() - t0:.1f} s "
          f"(cache: {cache_dir() or 'none, in-memory only'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
