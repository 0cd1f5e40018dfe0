"""The ``edgerun`` argument parser: commands, options, Ultralytics-style ``key=value`` arguments.

``parse(argv)`` returns the namespace or raises ``UsageError`` with one line naming the mistake and
the fix: unknown commands, options and ``key=`` names get the closest known one (difflib), an
option given twice with different values is refused, and ``model=``/``source=`` may come anywhere.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import sys
from typing import Any

from edgerun.kernels.errors import EdgerunError

__all__ = ["UsageError", "parse", "build_parser", "translate_kv", "COMMANDS", "ALL_COMMANDS"]


class UsageError(EdgerunError, ValueError):
    """A command line edgerun cannot run as given (exit status 2)."""


# Commands whose options and code live in their own modules: (module, entry point, help)
COMMANDS = {
    "stream": ("edgerun.runtime.cli.stream", "run_stream",
               "pipelined detection on a video, folder, camera or URL"),
    "benchmark": ("edgerun.runtime.cli.benchmark", "run_benchmark",
                  "time each stage, cold start and peers on a model"),
    "batch": ("edgerun.runtime.batch.run", "run_cli", "detect over many files on Ray; write JSONL/Parquet"),
    "export": ("edgerun.export.cli", "run_export", "finish an ONNX model: metadata, fp16/int8, verified"),
    "serve": ("edgerun.runtime.cli.serve", "run_serve", "answer Frigate's ZMQ detector requests with a model"),
}
ALL_COMMANDS = ("predict", "info", "warmup", *COMMANDS)

# -- key=value arguments ------------------------------------------------------------------------
# Commands taking Ultralytics-style `key=value` arguments, and their positionals in order.
_KV_POSITIONALS = {"predict": (), "stream": ("model", "source"), "benchmark": ("model", "source"),
                   "info": ("model",)}
# Ultralytics' (and YOLOv5's) spellings -> edgerun's option
_KV_ALIASES = {"agnostic_nms": "agnostic", "conf_thres": "conf", "iou_thres": "iou"}
# Ultralytics keys edgerun does not take, with what to do instead
_KV_ELSEWHERE = {
    "half": "precision is chosen when exporting: edgerun export MODEL.onnx -o OUT.onnx --half",
    "int8": "precision is chosen when exporting: edgerun export MODEL.onnx -o OUT.onnx --int8 --calib DIR",
    "classes": "there is no class filter; keep the classes you want from --json (class_id, class_name)",
    "show": "there is no window; watch in a browser with edgerun stream MODEL SOURCE --view PORT",
    "save_txt": "use --json (one JSON object per frame) instead",
    "project": "give the output directory with save=DIR (--save DIR)",
    "name": "give the output directory with save=DIR (--save DIR)",
    "verbose": "put -v before the command: edgerun -v predict ...",
    "stream": "for videos and cameras as a pipeline use edgerun stream MODEL SOURCE",
    "batch": "for many files on Ray use edgerun batch MODEL SOURCES -o OUT.jsonl",
    "vid_stride": "every frame of a video is processed; edgerun stream --max-fps N samples a live source",
    "augment": "test-time augmentation is not supported",
    "retina_masks": "masks are always mapped to the source image size",
    "line_width": "annotation line width is fixed",
}
_KV_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.S)
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Option string (``--conf``) -> action, for every optional of ``parser``."""
    return {s: a for a in parser._actions for s in a.option_strings}  # argparse has no public view


def _kv_keys(parser: argparse.ArgumentParser, command: str) -> dict[str, argparse.Action | None]:
    """The ``key=`` names a command takes: each option's dest, aliases, and its positionals (None)."""
    keys: dict[str, argparse.Action | None] = {}
    for a in parser._actions:
        if a.option_strings and a.dest not in ("help", "verbose", "version"):
            keys[a.dest] = a
    for alias, dest in _KV_ALIASES.items():
        if dest in keys:
            keys[alias] = keys[dest]
    for name in _KV_POSITIONALS[command]:
        keys[name] = None
    if command == "predict":
        keys["device"] = None
    return keys


def _kv_value(key: str, value: str, action: argparse.Action, command: str) -> list[str]:
    """The flag tokens one ``key=value`` stands for."""
    flag = max(action.option_strings, key=len)
    if action.nargs == 0:  # a switch: key=True / key=False
        if value.lower() not in _TRUE + _FALSE:
            raise UsageError(f"{key}={value}: expected {key}=True or {key}=False")
        return [flag] if value.lower() in _TRUE else []
    if command == "predict" and key == "save" and value.lower() in _TRUE + _FALSE:
        return [flag, "runs/predict"] if value.lower() in _TRUE else []
    if action.nargs in ("+", "*"):
        parts = [v for v in re.split(r"[,\s\[\]()]+", value) if v]
        return [flag, *parts]
    if key == "source" and value.startswith("[") and value.endswith("]"):  # source=[a.jpg,b.jpg]
        return [t for v in value[1:-1].split(",") if v.strip() for t in (flag, v.strip().strip("'\""))]
    return [flag, value]


def _unknown_key(key: str, value: str, keys: dict, command: str) -> UsageError:
    if key in _KV_ELSEWHERE:
        return UsageError(f"{key}={value}: edgerun {command} has no {key!r} option; {_KV_ELSEWHERE[key]}")
    close = difflib.get_close_matches(key, list(keys), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]}=?" if close else f"known keys: {', '.join(sorted(keys))}"
    return UsageError(f"unknown argument {key}={value}: {hint} (see edgerun {command} --help)")


def translate_kv(argv: list[str], parser: argparse.ArgumentParser, command: str) -> list[str]:
    """Rewrite Ultralytics' ``key=value`` arguments (``model=x.onnx source=a.jpg conf=0.3``) as
    edgerun's flags, in any order. A token that names an existing file is left alone; a token
    that is a flag's value (``--save out=1``) too. Unknown keys raise ``UsageError``."""
    opts, keys = _options(parser), _kv_keys(parser, command)
    out: list[str] = []
    head: dict[str, str] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok.startswith("-"):
            out.append(tok)
            action = opts.get(tok.split("=", 1)[0])
            if action is None or "=" in tok or action.nargs == 0:
                continue
            n = 1 if action.nargs is None else None  # None: as many as follow (nargs + / *)
            while i < len(argv) and (n is None or n > 0) and not argv[i].startswith("-"):
                if n is None and _KV_RE.fullmatch(argv[i]) and not os.path.exists(argv[i]):
                    break
                out.append(argv[i])
                i += 1
                n = n - 1 if n else n
            continue
        m = _KV_RE.fullmatch(tok)
        if m is None or os.path.exists(tok):
            out.append(tok)
            continue
        key, value = m.group(1), m.group(2)
        if key not in keys:
            raise _unknown_key(key, value, keys, command)
        if key == "device":
            if value.lower() != "cpu":
                raise UsageError(f"device={value}: edgerun runs on the CPU only; omit device= or use device=cpu")
            continue
        if keys[key] is None:  # a positional of this command
            if key in head and head[key] != value:
                raise UsageError(f"{key} given twice ({head[key]} and {value}): give it once")
            head[key] = value
            continue
        out += _kv_value(key, value, keys[key], command)
    ordered = [head[k] for k in _KV_POSITIONALS[command] if k in head]
    return ordered + out


# -- the parser -------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``edgerun: error:`` line (raised, printed by ``main``)."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message}; see {self.prog} --help")


def _unrecognized(extra: list[str], parser: argparse.ArgumentParser) -> UsageError:
    """Arguments no option of the command takes; a misspelt option gets the closest one."""
    message = f"unrecognized arguments: {' '.join(extra)}"
    flag = next((e for e in extra if e.startswith("-")), None)
    if flag:
        close = difflib.get_close_matches(flag.split("=")[0], list(_options(parser)), n=1, cutoff=0.6)
        if close:
            message += f" (did you mean {close[0]}?)"
    return UsageError(f"{message}; see {parser.prog} --help")


class _Once(argparse.Action):
    """``store`` that refuses one option given twice with different values (``--conf 0.5 conf=0.3``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = namespace.__dict__.setdefault("_given", {})
        if option_string and self.dest in given and given[self.dest][1] != values:
            first = given[self.dest][0]
            raise UsageError(f"{option_string} given twice with different values ({first} and "
                             f"{_show(values)}): give it once")
        if option_string:
            given[self.dest] = (_show(values), values)
        setattr(namespace, self.dest, values)


def _show(values: Any) -> str:
    return " ".join(map(str, values)) if isinstance(values, list) else str(values)


def _version() -> str:
    from importlib import metadata

    def v(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"
    from ..session import cpu_clusters

    py = ".".join(map(str, sys.version_info[:3]))
    return (f"edgerun {v('edgerun')} (onnxruntime {v('onnxruntime')}, numba {v('numba')}, numpy {v('numpy')}, "
            f"opencv {v('opencv-python-headless')}, Python {py})\ncpus: {cpu_clusters().describe()}")


_EXIT_HELP = ("exit status: 0 every input processed; 1 some inputs could not be read (each named on "
              "stderr); 2 usage error or unusable model/source; 130 interrupted; 141 stdout closed "
              "(e.g. | head).")
_KV_HELP = ("key=value: Ultralytics-style arguments are accepted in any order beside the others: every "
            "--option spelled as its name with underscores (--max-det 100 is max_det=100, --json is "
            "json=True){extra}. An unknown key is an error naming the closest known one; an option "
            "given twice with different values is an error.")
_PREDICT_EPILOG = (_KV_HELP.format(extra=", plus model=M.onnx, source=S (repeatable, or "
                                   "source=[a.jpg,b.jpg]), agnostic_nms=True, save=True (runs/predict) "
                                   "and device=cpu") + "\n\n"
                   "examples:\n"
                   "  edgerun predict yolov8n.onnx bus.jpg            # an image\n"
                   "  edgerun predict yolov8n.onnx photos/*.jpg clip.mp4 --json > out.jsonl\n"
                   "  edgerun predict model=yolov8n.onnx source=photos/ conf=0.4 save=True\n"
                   "  edgerun predict --demo --save runs/demo         # the bundled demo detector\n\n"
                   + _EXIT_HELP)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = _Parser(prog="edgerun", description="Fast, faithful vision inference on edge CPUs.",
                epilog=_EXIT_HELP + " Run edgerun COMMAND --help for a command's options.", formatter_class=fmt)
    p.add_argument("-v", "--verbose", action="store_true", help="log what was inferred; show tracebacks")
    p.add_argument("-V", "--version", action="version", version=_version(), help="print versions and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands: dict[str, argparse.ArgumentParser] = {}
    p.set_defaults(_commands=commands)  # each command's own parser, for translate_kv

    def add(name: str, help_text: str, epilog: str | None = None) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text, description=help_text, epilog=epilog, formatter_class=fmt)
        sp.register("action", None, _Once)
        sp.register("action", "store", _Once)
        commands[name] = sp
        return sp

    pr = add("predict", "detect objects in images, directories, globs or videos", _PREDICT_EPILOG)
    pr.add_argument("inputs", nargs="*", metavar="[MODEL.onnx] SOURCE",
                    help="the model (first .onnx) and every image, directory, glob or video to run on")
    pr.add_argument("--model", help="the ONNX model (same as a positional MODEL.onnx; key: model=)")
    pr.add_argument("--source", action="append", default=[], help="an input, repeatable (key: source=)")
    pr.add_argument("--demo", action="store_true",
                    help="run the bundled demo detector (the default when no model and no source is given)")
    pr.add_argument("--conf", type=float, help="score threshold (default 0.25; faces 0.9)")
    pr.add_argument("--iou", type=float, help="NMS IoU threshold (default 0.7; faces 0.3)")
    pr.add_argument("--max-det", type=int, default=300, help="max detections per image (default 300)")
    pr.add_argument("--agnostic", action="store_true", help="class-agnostic NMS (key: agnostic_nms=True)")
    pr.add_argument("--imgsz", type=int, nargs="+", metavar="N",
                    help="model input size H [W], only for models with a dynamic input size")
    pr.add_argument("--threads", type=int, help="CPU threads (default: all this process may use)")
    pr.add_argument("--save", metavar="DIR", help="write annotated images/videos into DIR (created)")
    pr.add_argument("--json", action="store_true", help="one JSON object per frame on stdout")
    pr.add_argument("--task", choices=("detect", "segment", "pose", "obb", "classify", "face", "semantic", "depth"),
                    help="override the task read from the model (default: from metadata or the graph)")
    pr.add_argument("--head", help="override the output head (yolov8, yolov5, yolox, end2end, dfl)")
    pr.add_argument("--num-classes", type=int, help="override the class count")

    info = add("info", "show a model's inputs, outputs, metadata and resolved spec",
               _KV_HELP.format(extra=", plus model=M.onnx") + "\n\n" + _EXIT_HELP)
    info.add_argument("model", help="the ONNX model")
    info.add_argument("--json", action="store_true", help="print the report as JSON on stdout")

    add("warmup", "compile and cache every kernel the runtime uses", _EXIT_HELP)

    for name, (module, _run, help_text) in COMMANDS.items():
        extra = ", plus model= and source=" if name in _KV_POSITIONALS else ""
        epilog = (_KV_HELP.format(extra=extra) + "\n\n" if name in _KV_POSITIONALS else "") + _EXIT_HELP
        sp = add(name, help_text, epilog)
        if only in (None, name):  # only the chosen command's options are built (and imported)
            importlib.import_module(module).add_arguments(sp)
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    i = next((k for k, a in enumerate(argv) if not a.startswith("-")), None)
    command = argv[i] if i is not None else None
    if command is not None and command not in ALL_COMMANDS:
        close = difflib.get_close_matches(command, ALL_COMMANDS, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]}?" if close else f"commands: {', '.join(ALL_COMMANDS)}"
        raise UsageError(f"unknown command {command!r}: {hint} (see edgerun --help)")
    parser = build_parser(command)
    sp = parser.get_default("_commands").get(command, parser)
    if command in _KV_POSITIONALS:
        argv = argv[:i + 1] + translate_kv(argv[i + 1:], sp, command)
    args, extra = parser.parse_known_args(argv)
    if extra:
        raise _unrecognized(extra, sp)
    if args.command is None:
        raise UsageError("no command given: edgerun predict MODEL.onnx SOURCE, or see edgerun --help")
    return args
