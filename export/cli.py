"""``edgerun export``: finish an ONNX detector (metadata, fp16/int8) behind a verification gate.

Exit status (via ``edgerun.runtime.cli``): 0 written and verified; 2 on any error, including a failed
verification (nothing is written then unless ``--force``).
"""
from __future__ import annotations

import argparse
import json

__all__ = ["add_arguments", "run_export"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="ONNX model to finish (e.g. from `yolo export format=onnx`), or a torch "
                   "state_dict checkpoint (.pt) with --arch")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="file to write")
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--half", action="store_true", help="fp16 weights and compute (float32 I/O)")
    prec.add_argument("--int8", action="store_true", help="int8 static QDQ; needs --calib DIR")
    p.add_argument("--calib", metavar="DIR", help="calibration images for --int8 (50-200 typical)")
    p.add_argument("--calib-max", type=int, default=200, help="use at most this many calibration images")
    p.add_argument("--verify-images", metavar="DIR", help="images for the verification gate "
                   "(default: generated demo scenes; pass real ones for a meaningful check)")
    p.add_argument("--imgsz", type=int, nargs="+", help="model input size H [W] (dynamic models)")
    p.add_argument("--min-f1", type=float, help="box agreement needed (default 0.99; int8 0.9)")
    p.add_argument("--force", action="store_true", help="write the file even if verification fails")
    p.add_argument("--threads", type=int, help="CPU threads for verification")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    t = p.add_argument_group("torch checkpoints (see edgerun.export.torch_cli)")
    t.add_argument("--arch", metavar="MODULE:CALLABLE", help="factory returning the nn.Module of the state_dict")
    t.add_argument("--dynamic", action="store_true", help="symbolic batch axis")
    t.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    t.add_argument("--task", choices=("detect", "segment", "pose", "classify", "semantic", "face"),
                   help="task recorded in the metadata")
    t.add_argument("--trust-checkpoint", action="store_true", help="allow full unpickling of a checkpoint "
                   "that is not a plain state_dict: this runs arbitrary code from the file")


class _Progress:
    """Calibration progress through ``edgerun.runtime.progress.Progress`` (a bar on a TTY, plain
    lines in a log, never a carriage return): the ``progress(i, n)`` callback of the exporters."""

    def __init__(self):
        self.bar = None

    def __call__(self, i: int, n: int) -> None:
        from edgerun.runtime.progress import Progress

        if self.bar is None:
            self.bar = Progress("calibrating", n, "image")
        self.bar.update(i - self.bar.n)
        if i >= n:
            self.bar.close()


def run_export(args: argparse.Namespace) -> int:
    from .torch_cli import is_torch_checkpoint, run_torch_export
    from .ultra import export_checkpoint, format_gate, is_ultralytics_checkpoint

    if not args.arch and is_ultralytics_checkpoint(args.source):
        imgsz = args.imgsz[0] if args.imgsz and len(args.imgsz) == 1 else args.imgsz
        r = export_checkpoint(args.source, args.output, imgsz=imgsz, dynamic=args.dynamic, force=args.force,
                              precision="fp16" if args.half else "int8" if args.int8 else "fp32",
                              calib=args.calib, verify_images=args.verify_images, threads=args.threads,
                              progress=_Progress())
        print(f"{r['path']}: written in {r['seconds']} s (Ultralytics export {r['export_seconds']} s)\n"
              f"{r['table']}\n{format_gate(r['checkpoint_gate'])}")
        return 0
    if is_torch_checkpoint(args):
        return run_torch_export(args)
    from .finish import finish_onnx

    precision = "fp16" if args.half else "int8" if args.int8 else "fp32"
    imgsz = None
    if args.imgsz:
        imgsz = (args.imgsz[0], args.imgsz[-1])
    report = finish_onnx(args.source, args.output, precision=precision, calib=args.calib,
                         calib_max=args.calib_max, verify_images=args.verify_images, imgsz=imgsz,
                         force=args.force, min_f1=args.min_f1, threads=args.threads, progress=_Progress())
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "table"}, indent=2, default=str))
    else:
        status = "written (verification FAILED, forced)" if report["forced"] else "written"
        print(f"{report['path']}: {status}\n{report['table']}")
    return 0
