"""The ``edgerun`` command line: predict, info, warmup, benchmark, stream, batch, export, serve.

Exit status: 0 all inputs processed; 1 some inputs could not be read (each reported on stderr,
the others still processed); 2 usage error, missing/unusable model or source; 130 interrupted;
141 stdout was closed by its reader (``edgerun ... | head``), as for other Unix tools.
Every user mistake is one ``edgerun: error: ...`` line on stderr naming the problem and the fix.
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

from .args import COMMANDS, UsageError, parse

__all__ = ["main", "UsageError", "compile_notice", "check_output_file", "kernels_cached"]

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what `set -o pipefail` shows for `cat` cut off by `head`


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv[:1] or "--verbose" in argv[:1]
    try:
        try:
            args = parse(argv)
            logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                                format="%(message)s", stream=sys.stderr)
            # Mixed cores: this process (and every thread it starts: ORT's pool, the stream stages; the
            # kernels run on them) stays on the fastest cluster; a no-op on uniform CPUs, with
            # $EDGERUN_THREADS or --threads (the user's count wins, unpinned).
            if getattr(args, "threads", None) is None:
                from ..session import use_big_cores
                use_big_cores()
            code = _dispatch(args)
            sys.stdout.flush()  # a closed pipe shows here for buffered output, not at exit
            return code
        except BrokenPipeError:  # the reader (`| head`) has what it wanted: end quietly
            silence_stdout()
            return EXIT_BROKEN_PIPE
    except EdgerunError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print("edgerun: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # an output that cannot be written, a device that went away
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return _fail(f"{where}{exc.strerror or exc}", verbose)
    except Exception as exc:  # noqa: BLE001 - never a traceback for the user; -v shows it
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if type(exc).__module__.startswith("onnxruntime"):
            return _fail(f"ONNX Runtime: {first}", verbose)
        return _fail(f"unexpected {type(exc).__name__}: {first} (a bug; rerun with edgerun -v ... "
                     "and report the traceback)", verbose)


def _fail(message: str, traceback: bool = False) -> int:
    if traceback:
        import traceback as tb
        tb.print_exc()
    print(f"edgerun: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def silence_stdout() -> None:
    """Point fd 1 at /dev/null so the text still buffered for a closed or failed stdout (and the
    interpreter's flush at exit) cannot raise again or print "Exception ignored"."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "predict":
        from .predict import run_predict
        return run_predict(args)
    if args.command == "info":
        return _info(args)
    if args.command == "warmup":
        return _warmup()
    if args.command == "export":
        check_output_file(args.output, "-o/--output")
    module, run, _ = COMMANDS[args.command]
    return getattr(importlib.import_module(module), run)(args)


# -- helpers shared by the commands -----------------------------------------------------------
def check_output_file(path: str | None, option: str) -> None:
    """Refuse an output file that cannot be written, before any long work: its folder must
    exist and be writable, and the path must not be a directory."""
    if not path:
        return
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{option} {path}: is a directory; give a file name")
    if not os.path.isdir(parent):
        raise UsageError(f"{option} {path}: folder {parent} does not exist; create it first (mkdir -p {parent})")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{option} {path}: folder {parent} is not writable; choose another path")


_KERNEL_MODULES = ("camera.py", "decode.py", "nms.py", "boxes.py")  # letterbox lives in camera.py


def kernels_cached() -> bool:
    """True when this install's main kernels are in the kernel cache."""
    from edgerun.kernels import modules_cached

    return modules_cached(_KERNEL_MODULES)


def compile_notice() -> bool:
    """Say once, before the first frame, that kernels compile now (not cached yet); True if said."""
    if kernels_cached():
        return False
    print("edgerun: compiling kernels (first run only, ~10 s; `edgerun warmup` does it ahead of time)",
          file=sys.stderr, flush=True)
    return True


# -- info and warmup ----------------------------------------------------------------------------
def _info(args) -> int:
    from ..tasks.base import load

    sess, spec = load(args.model)
    problem, task_spec = _problem(sess, spec)
    spec = task_spec or spec
    report = {
        "model": os.path.abspath(args.model),
        "inputs": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype.__name__} for t in sess.inputs],
        "outputs": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype.__name__} for t in sess.outputs],
        "metadata": {k: (v if len(v) < 200 else v[:197] + "...") for k, v in sess.metadata.items()},
        "spec": spec.describe(),
        "guessed": list(spec.guessed),
        "problem": problem,
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


def _problem(sess, spec):
    """(why no task object can run this model as described, or None; the task's own spec)."""
    from ..tasks.dispatch import TASK_CLASSES

    if spec.task not in TASK_CLASSES:
        return f"{sess.path}: task {spec.task!r} is not supported yet", None
    try:
        task = TASK_CLASSES[spec.task](sess, spec)
    except EdgerunError as exc:
        return str(exc), None
    return None, getattr(task, "spec", None)


def _refuse(problem: str | None) -> int:
    """The description is printed either way; a model nothing can run still exits 2."""
    if problem is None:
        return 0
    sys.stdout.flush()
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
