"""``edgerun serve [MODEL] --frigate-zmq ENDPOINT``: a detector for Frigate over its ZMQ protocol.

    edgerun serve yolov8n_320.onnx --frigate-zmq tcp://127.0.0.1:5555
    edgerun serve --frigate-zmq ipc:///tmp/cache/zmq_detector      # Frigate transfers its model

Runs until Ctrl-C / SIGTERM (or ``--max-requests``), then prints the requests answered, the
errors and the p50/p99 time per request on stderr. An endpoint that cannot be bound, a missing
model or a model that is not a detector is one ``edgerun: error:`` line (exit 2).
"""
from __future__ import annotations

import signal
import sys
import threading

__all__ = ["add_arguments", "run_serve"]


def add_arguments(p) -> None:
    """The ``serve`` sub-command's options."""
    p.add_argument("model", nargs="?", help="MODEL.onnx (a detector) served whatever model Frigate names; "
                   "omit it to let Frigate transfer its model (saved in --model-dir)")
    p.add_argument("--frigate-zmq", required=True, metavar="ENDPOINT",
                   help="bind Frigate's ZMQ detector endpoint: tcp://127.0.0.1:5555 or ipc:///PATH")
    p.add_argument("--model-dir", help="where models Frigate transfers are kept (default ~/.cache/edgerun/frigate)")
    p.add_argument("--pixel-format", choices=("rgb", "bgr"), default="rgb",
                   help="Frigate's model input_pixel_format (default rgb, Frigate's default)")
    p.add_argument("--conf", type=float, help="score threshold (default 0.25; Frigate filters by its own too)")
    p.add_argument("--iou", type=float, help="NMS IoU threshold")
    p.add_argument("--threads", type=int, help="ORT threads (default: automatic)")
    p.add_argument("--max-requests", type=int, metavar="N", help="stop after answering N requests")


def run_serve(args) -> int:
    from ..integrations.frigate import FrigateDetector, FrigateServer, check_endpoint

    from . import compile_notice

    check_endpoint(args.frigate_zmq)  # before the model loads
    detector = FrigateDetector(args.model, model_dir=args.model_dir, pixel_format=args.pixel_format,
                               score_threshold=args.conf, iou_threshold=args.iou, threads=args.threads)
    server = FrigateServer(detector, args.frigate_zmq)
    what = args.model or f"the model Frigate names (from {detector.model_dir})"
    print(f"edgerun: serving {what} to Frigate's zmq detector on {args.frigate_zmq}", file=sys.stderr, flush=True)
    compile_notice()
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, lambda *_: server.stop())
    try:
        server.serve(args.max_requests)
    finally:
        server.close()
    st = server.stats()
    print(f"edgerun: {st['requests']} request(s) answered, {st['errors']} error(s); per request p50 "
          f"{st['p50_ms']} ms, p99 {st['p99_ms']} ms", file=sys.stderr, flush=True)
    return 0
