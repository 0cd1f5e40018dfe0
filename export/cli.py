"""``edgerun export``: finish an ONNX detector (metadata, fp16/int8) behind a verification gate.

Exit status (via ``edgerun.runtime.cli``): 0 written (verified, or "not verified" when nothing to verify on
was given); 2 on any error, including a failed verification or, with --verify-images, nothing found to verify
on (nothing is written then unless ``--force``).
"""
from __future__ import annotations

import argparse
import json
import os

__all__ = ["add_arguments", "run_export"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="ONNX model to finish (e.g. from `yolo export format=onnx`), an Ultralytics "
                   "checkpoint (best.pt; needs the ultralytics extra), or a torch state_dict (.pt) with --arch")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="file to write (an existing file "
                   "is refused unless --force)")
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--half", action="store_true", help="fp16 weights and compute (float32 I/O)")
    prec.add_argument("--int8", action="store_true", help="int8 static QDQ; needs --calib DIR")
    p.add_argument("--calib", metavar="DIR", help="calibration images for --int8 (a quarter, at most 16, is held "
                   "out to verify on when --verify-images is not given); for a checkpoint without --int8: "
                   "images to verify on")
    p.add_argument("--calib-max", type=int, default=32, help="calibrate on at most this many images (default 32)")
    p.add_argument("--float-nodes", choices=("fixed", "search"), default="fixed", help="--int8: which nodes stay "
                   "float: 'fixed' (stem, decode tail, last head convs) or 'search' (measured: the fastest set "
                   "of those groups that passes the gate; about 10 s per trial, at most --search-trials)")
    p.add_argument("--head", choices=("auto", "graph", "raw"), default="auto", help="Ultralytics DFL detectors "
                   "(YOLOv8/YOLO11 detect): 'raw' cuts the decode tail out of the graph and edgerun decodes only the "
                   "anchors above the threshold (the file is then edgerun's, not Ultralytics'); 'graph' keeps it; "
                   "'auto' (default): raw for --int8, graph otherwise")
    p.add_argument("--search-trials", type=int, default=10, help="--float-nodes search: calibrations at most")
    p.add_argument("--verify-images", metavar="DIR", help="images for the verification gate; giving them asks "
                   "for a gate: nothing found on them is a failure (default: held-out --calib images for "
                   "--int8, else generated scenes for ONNX sources; 'not verified' when nothing is found)")
    p.add_argument("--val", metavar="DIR", help="YOLO-labelled images (labels/ beside images/, Ultralytics' "
                   "layout): report COCO mAP50-95/mAP50 of source and result (needs faster-coco-eval or "
                   "pycocotools, in the export extra)")
    p.add_argument("--imgsz", type=int, nargs="+", help="model input size H [W] (dynamic models, checkpoints)")
    p.add_argument("--static", action="store_true", help="checkpoints: fixed H/W export (default: dynamic H/W, "
                   "which reproduces the checkpoint's rect letterboxing on non-square images)")
    p.add_argument("--min-f1", type=float, help="box agreement needed (default 0.99; int8 0.9)")
    p.add_argument("--force", action="store_true", help="replace an existing output; write the file even if "
                   "verification fails")
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


class _StepProgress:
    """``progress(i, n)`` callback of a per-image step (int8 calibration, the checkpoint gate), shown
    through the shared ``Progress`` under ``desc``."""

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self._bar = None

    def __call__(self, i: int, n: int) -> None:
        from edgerun.runtime.progress import Progress

        if self._bar is None:
            self._bar = Progress(self.desc, total=n, unit="img")
        self._bar.update(1)
        if i >= n:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _precision(args: argparse.Namespace) -> str:
    return "fp16" if args.half else "int8" if args.int8 else "fp32"


def _print_json(report: dict) -> None:
    print(json.dumps({k: v for k, v in report.items() if k != "table"}, indent=2, default=str))


def run_export(args: argparse.Namespace) -> int:
    from .torch_cli import is_torch_checkpoint, run_torch_export
    from .ultra import export_checkpoint, format_gate, is_ultralytics_checkpoint

    if os.path.exists(args.output) and not args.force:  # the source itself included: never destroy
        from .torch_export import ExportError
        raise ExportError(f"{args.output} exists; pass --force to replace it")
    progress, gate_progress = _StepProgress("int8 calibration"), _StepProgress("checkpoint gate")
    try:
        if not args.arch and is_ultralytics_checkpoint(args.source):
            imgsz = args.imgsz[0] if args.imgsz and len(args.imgsz) == 1 else args.imgsz
            r = export_checkpoint(args.source, args.output, imgsz=imgsz, dynamic=not args.static,
                                  force=args.force, precision=_precision(args), calib=args.calib,
                                  calib_max=args.calib_max, verify_images=args.verify_images,
                                  threads=args.threads, progress=progress, val=args.val,
                                  verify_progress=gate_progress, head=args.head)
            if args.json:
                _print_json(r)
            else:
                status = "written (verification FAILED, forced)" if r["forced"] else \
                    "written, NOT VERIFIED" if not r["verified"] else "written"
                print(f"{r['path']}: {status} in {r['seconds']} s (Ultralytics export {r['export_seconds']} s)\n"
                      f"{r['table']}\n{format_gate(r['checkpoint_gate'])}")
            return 0
        if is_torch_checkpoint(args):
            return run_torch_export(args)
        from .finish import finish_onnx

        imgsz = (args.imgsz[0], args.imgsz[-1]) if args.imgsz else None
        report = finish_onnx(args.source, args.output, precision=_precision(args), calib=args.calib,
                             calib_max=args.calib_max, verify_images=args.verify_images, imgsz=imgsz,
                             force=args.force, min_f1=args.min_f1, threads=args.threads, progress=progress,
                             val=args.val, float_nodes=args.float_nodes, search_trials=args.search_trials,
                             head=args.head)
    finally:
        progress.close()
        gate_progress.close()
    if args.json:
        _print_json(report)
    else:
        status = "written (verification FAILED, forced)" if report["forced"] else \
            "written, NOT VERIFIED" if not report["verified"] else "written"
        print(f"{report['path']}: {status}\n{report['table']}")
    return 0
