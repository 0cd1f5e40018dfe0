"""``edgerun stream MODEL SOURCE``: the pipelined runner on a file, folder, camera or URL.

    edgerun stream yolov8n.onnx rtsp://cam/1 --track --save out.mp4 --view 8080
    edgerun stream yolov8n.onnx video.mp4 --json > frames.jsonl
    edgerun stream yolov8n.onnx rtsp://cam/1 --mqtt mqtt://broker:1883/driveway   # docs/integrations.md

Per frame (``--json``): ``edgerun predict --json``'s record plus ``timestamp``, ``age_ms`` and, with
``--track``, ``tracker_id`` per detection. Events (reconnects, resolution changes) go to stderr.
Streams over an image folder name each frame's file in ``source``; a file that cannot be read is
reported, counted as an error and makes the exit status 1. Ctrl-C / SIGTERM: stop reading, drain
frames in flight, flush the JSON and the video (always a valid file), exit 0; a second signal
aborts at once (exit 130; the video is still finalised). A --save folder that does not exist and a
--view port already taken are refused before anything starts (exit 2). A failing output (ENOSPC,
a closed pipe, a video OpenCV cannot open) is a ``sink_error`` event: that output is dropped, the
stream goes on with the others and stops cleanly (exit 1) when none is left.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from . import UsageError, check_output_file, compile_notice, silence_stdout
from ..progress import Progress
from ..results import result_record
from ..streaming.runner import StreamResult, StreamRunner
from ..streaming.sources import ImageSource, VideoSource, open_source

__all__ = ["add_arguments", "run_stream"]


def add_arguments(p) -> None:
    """The ``stream`` sub-command's options."""
    p.add_argument("model", help="MODEL.onnx")
    p.add_argument("source", help="video file, image folder/glob, camera index or rtsp/http/tcp URL")
    p.add_argument("--mode", choices=("latest", "every"), help="latest: newest frame, drops counted "
                   "(default for cameras/URLs); every: every frame in order (default for files)")
    p.add_argument("--max-fps", type=float, help="process at most this many frames per second")
    p.add_argument("--max-frames", type=int, help="stop after reading this many frames")
    p.add_argument("--track", action="store_true", help="ByteTrack ids (tracker_id) per detection")
    p.add_argument("--save", metavar="OUT.mp4", help="write the annotated video here")
    p.add_argument("--json", action="store_true", help="one JSON object per frame on stdout")
    p.add_argument("--view", type=int, metavar="PORT", help="serve MJPEG + /status on 127.0.0.1:PORT (0: any)")
    p.add_argument("--conf", type=float, help="score threshold")
    p.add_argument("--iou", type=float, help="NMS IoU threshold")
    p.add_argument("--workers", type=lambda v: v if v == "calibrate" else int(v),
                   help="parallel inference sessions, or 'calibrate' to measure (default: automatic)")
    p.add_argument("--threads", type=int, help="ORT threads per session (default: automatic)")
    p.add_argument("--rtsp-transport", choices=("tcp", "udp"), help="rtsp:// URLs: RTP over the RTSP TCP "
                   "connection or over UDP (default: OpenCV's, TCP)")
    p.add_argument("--timeout", type=float, default=3.0, help="open/read timeout for URLs, and the stall "
                   "watchdog's for every live source, seconds")
    p.add_argument("--mqtt", metavar="mqtt://HOST[:PORT]/PREFIX", help="publish per-track events, JPEG "
                   "snapshots and Home Assistant discovery there (implies --track; needs edgerun[mqtt])")
    p.add_argument("--mqtt-qos", type=int, choices=(0, 1, 2), default=1, help="MQTT QoS (default 1)")
    p.add_argument("--mqtt-queue", type=int, default=1000, metavar="N", help="messages held while the broker "
                   "is away (default 1000); more are dropped and counted")
    p.add_argument("--mqtt-update", type=float, default=1.0, metavar="S",
                   help="seconds of frame time between two update events of a track (default 1)")


class _Abort(Exception):
    """Raised in the main thread by a second Ctrl-C / SIGTERM."""


class _Signals:
    """First SIGINT/SIGTERM: drain; second: abort. Installed only in the main thread."""

    def __init__(self, runner: StreamRunner):
        self.runner, self.count, self._old = runner, 0, {}
        self.active = True  # inside the result loop: a second signal raises _Abort there

    def __call__(self, signum, _frame) -> None:
        self.count += 1
        if self.count > 1:
            if self.active:
                raise _Abort()
            print("edgerun: aborted", file=sys.stderr, flush=True)  # already past the loop
            os._exit(130)
        print(f"edgerun: {signal.Signals(signum).name}: stopping, draining frames in flight "
              "(again to abort)", file=sys.stderr, flush=True)
        self.runner.stop(drain=True)

    def install(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self)
        return self

    def restore(self) -> None:
        """Back to the previous handlers, unless a signal came: then a second one still exits 130."""
        self.active = False
        if self.count == 0:
            for s, h in self._old.items():
                signal.signal(s, h)


class _Sinks:
    """JSON Lines, the annotated video and the live view, fed results in order.

    A sink that fails (``OSError``: a full disk, ``/dev/full``, a dead pipe; a video file that cannot
    be opened) is recorded as a ``sink_error`` event, closed and left out from then on; the stream
    goes on while another sink is alive and stops (``alive`` False) when the last one has failed.
    """

    def __init__(self, args, names: tuple[str, ...], fps: float, view, on_error: Callable[[str, str], None],
                 files: tuple[str, ...] = ()):
        self.args, self.names, self.fps, self.view, self.files = args, names, fps, view, files
        self.on_error = on_error
        self.writer = None
        self.size: tuple[int, int] | None = None
        self.frames = self.errors = 0
        self.live = {k for k, on in (("json", args.json), ("video", args.save), ("view", view is not None)) if on}
        self.failed: list[str] = []

    @property
    def alive(self) -> bool:
        return bool(self.live) or not self.failed

    def write(self, r: StreamResult) -> None:
        self.frames += 1
        self.errors += r.error is not None
        if "json" in self.live:
            self._guard("json", lambda: print(json.dumps(record(r, self.names, self.files)), flush=True))
        elif r.error:
            print(f"edgerun: error: frame {r.index}: {r.error}", file=sys.stderr)
        if r.image is not None and r.detections is not None and self.live & {"video", "view"}:
            from ..tasks.dispatch import annotate
            img = annotate(r.image, r.detections, self.names)
            if "video" in self.live:
                self._guard("video", lambda: self._save(img))
            if "view" in self.live:
                self.view.publish(img)

    def _guard(self, sink: str, write: Callable[[], None]) -> None:
        try:
            write()
        except BrokenPipeError:  # stdout closed (e.g. `| head`): the reader has what it wanted
            self._fail(sink, "broken pipe", report=sink != "json")
        except OSError as exc:
            self._fail(sink, f"{exc.strerror or exc} (errno {exc.errno})" if exc.errno else str(exc))

    def _fail(self, sink: str, why: str, report: bool = True) -> None:
        self.live.discard(sink)
        self.failed.append(sink)
        if sink == "json":
            silence_stdout()
        elif sink == "video" and self.writer is not None:
            self.writer.release()
            self.writer = None
        if report:
            target = "stdout" if sink == "json" else self.args.save if sink == "video" else "view"
            left = ", ".join(sorted(self.live))
            self.on_error("sink_error", f"{sink} -> {target}: {why}; " +
                          (f"continuing with {left}" if left else "no output left, stopping"))

    def _save(self, img) -> None:
        import cv2

        if self.writer is None:
            self.size = (img.shape[1], img.shape[0])
            self.writer = cv2.VideoWriter(self.args.save, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
            if not self.writer.isOpened():
                self.writer = None
                raise OSError(f"cannot open {self.args.save!r} for writing a {self.size[0]}x{self.size[1]} "
                              "mp4v video")
        if (img.shape[1], img.shape[0]) != self.size:  # resolution change: keep the file's size
            img = cv2.resize(img, self.size)
        self.writer.write(img)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
        try:
            sys.stdout.flush()
        except OSError:
            silence_stdout()


def record(r: StreamResult, names: tuple[str, ...], files: tuple[str, ...] = ()) -> dict[str, Any]:
    """``edgerun predict --json``'s record plus timestamp/age (and tracker_id per detection).
    ``files``: an image source's files; a frame's timestamp is its file's position there."""
    source = r.source
    if files and 0 <= int(r.timestamp) < len(files):
        source = files[int(r.timestamp)]
    rec = result_record(source, r.index, r.detections, names, error=r.error)
    rec["timestamp"] = round(r.timestamp, 6)
    rec["age_ms"] = round(r.age * 1e3, 3)
    return rec


def _open(args):
    from ..tasks.dispatch import open_model

    opts = {k: v for k, v in (("score_threshold", args.conf), ("iou_threshold", args.iou)) if v is not None}
    model = open_model(args.model, strict=False, **opts)
    if "OPENCV_LOG_LEVEL" not in os.environ:  # edgerun reports stalls and reconnects itself: keep
        import cv2                             # OpenCV's per-attempt warnings off the CLI's stderr
        log = getattr(cv2.utils, "logging", None)  # opencv 5 / >= 4.9; 4.8 has only cv2.setLogLevel
        log.setLogLevel(log.LOG_LEVEL_ERROR) if log is not None else cv2.setLogLevel(2)  # 2: ERROR
    transport = getattr(args, "rtsp_transport", None)
    if transport and not str(args.source).lower().startswith(("rtsp://", "rtsps://")):
        raise UsageError(f"--rtsp-transport {transport}: only for rtsp:// sources, got {args.source!r}")
    src = open_source(args.source, open_timeout=args.timeout, read_timeout=args.timeout,
                      **({"rtsp_transport": transport} if transport else {})) \
        if "://" in str(args.source) else open_source(args.source)
    return model, src


class _LateStatus:
    """The view's ``/status``: empty until the runner exists, then its ``stats()``."""

    runner: StreamRunner | None = None

    def __call__(self) -> dict:
        return self.runner.stats() if self.runner is not None else {}


def _check_outputs(args, status: _LateStatus):
    """Refuse unusable options and outputs before opening anything: the --save folder, the --view
    port (bound now and returned as the server)."""
    check_output_file(args.save, "--save")
    for name, value, low in (("--max-frames", args.max_frames, 1), ("--max-fps", args.max_fps, 1e-9),
                             ("--timeout", args.timeout, 1e-9), ("--threads", args.threads, 1)):
        if value is not None and value < low:
            raise UsageError(f"{name} {value}: expected a positive number")
    if isinstance(args.workers, int) and args.workers < 1:
        raise UsageError(f"--workers {args.workers}: expected >= 1 or 'calibrate'")
    if args.view is None:
        return None
    from ..streaming.view import ViewServer
    try:
        view = ViewServer(args.view, status)
    except OverflowError:
        raise UsageError(f"--view {args.view}: expected a port 0-65535 (0: any free port)") from None
    except OSError as exc:
        raise UsageError(f"--view {args.view}: cannot listen on 127.0.0.1:{args.view} ({exc.strerror}); "
                         "pick another port, or --view 0 for any free one") from None
    return view


def run_stream(args) -> int:
    """Run the stream; 0 on a clean end or a drained stop, 1 if frames or files failed, 130 on abort."""
    status = _LateStatus()
    view = _check_outputs(args, status)
    mqtt = None
    try:
        mqtt = _connect_mqtt(args)  # a bad URL or a refused broker: exit 2 before anything starts
        return _run_stream(args, view, status, mqtt)
    finally:
        if view is not None:
            view.close()
        if mqtt is not None:
            mqtt.close(timeout=1.0)  # a no-op after the stream's own close


def _connect_mqtt(args):
    if not args.mqtt:
        return None
    from ..integrations.mqtt import MqttPublisher
    return MqttPublisher(args.mqtt, qos=args.mqtt_qos, max_queued=args.mqtt_queue, update_every=args.mqtt_update,
                         model=os.path.basename(args.model), connect_timeout=max(args.timeout, 1.0)).connect()


def _run_stream(args, view, status: _LateStatus, mqtt=None) -> int:
    model, src = _open(args)
    events = _Events()
    mode = {"latest": "latest", "every": "every_frame", None: "latest" if src.live else "every_frame"}[args.mode]
    tracker = None
    if args.track or mqtt is not None:
        from ..streaming.tracker import ByteTracker
        tracker = ByteTracker()
    runner = StreamRunner(model, mode=mode, max_fps=args.max_fps, max_frames=args.max_frames,
                          workers=args.workers, threads=args.threads, tracker=tracker,
                          keep_frames=bool(args.save or args.view is not None or mqtt), on_event=events,
                          stall_timeout=args.timeout)
    if mqtt is not None:
        mqtt.use_model(model.spec.names, track_buffer=tracker.track_buffer)
        mqtt.on_event = runner.add_event
    if view is not None:
        status.runner = runner
        print(f"edgerun: view on {view.url} (status: {view.url}status)", file=sys.stderr, flush=True)
    fps = args.max_fps or (src.fps if isinstance(src, VideoSource) else 10.0)
    files = src.files if isinstance(src, ImageSource) else ()
    sinks = _Sinks(args, model.spec.names, fps, view, runner.add_event, files)
    signals = _Signals(runner).install()
    progress = Progress("stream", _total(src, args.max_frames), "frame",
                        enabled=not (args.json and _isatty(sys.stdout)))
    compile_notice()
    code, t0 = 0, time.perf_counter()
    try:
        runner.start(src)
        for r in runner.results():
            sinks.write(r)
            if mqtt is not None:
                mqtt.write(r)
            progress.update(1, errors=sinks.errors + events.bad_files)
            if not sinks.alive:  # every output failed: nowhere to put results, stop cleanly
                code = 1
                break
    except _Abort:
        code = 130
    finally:
        progress.close()
        runner.stop(drain=False, timeout=0.5 if code == 130 else 5.0)  # a no-op after a clean end
        signals.restore()
        sinks.close()
        if mqtt is not None and code != 130:
            mqtt.close()
            print(f"edgerun: {mqtt.summary()}", file=sys.stderr, flush=True)
    if code == 130:  # a reader may still sit in a blocking read: leave without waiting for it
        print("edgerun: aborted", file=sys.stderr, flush=True)
        os._exit(130)
    s = runner.stats()
    saved = args.save and "video" not in sinks.failed
    errors = s["errors"] + events.bad_files
    print(f"{s['read']} read, {sinks.frames} result(s), {s['dropped']} dropped, {errors} error(s)"
          + (f" ({events.bad_files} unreadable file(s))" if events.bad_files else "")
          + f", {s['reconnects']} reconnect(s), {time.perf_counter() - t0:.2f} s"
          + (f"; annotated video in {args.save}" if saved else "")
          + (f"; failed output(s): {', '.join(sinks.failed)}" if sinks.failed else ""), file=sys.stderr)
    code = code or (1 if sinks.errors or sinks.failed or events.bad_files else 0)
    if signals.count:  # stopped by a signal: everything is flushed; do not wait on a reader stuck
        sys.stdout.flush()  # in a blocking network read (interpreter exit would join it)
        sys.stderr.flush()
        os._exit(code)
    return code


class _Events:
    """Prints the source's events on stderr (an unreadable file as an error) and counts bad files."""

    def __init__(self):
        self.bad_files = 0

    def __call__(self, e: dict) -> None:
        if e["kind"] == "bad_file":
            self.bad_files += 1
            print(f"edgerun: error: {e.get('detail', '')}", file=sys.stderr, flush=True)
        elif e["kind"] not in ("opened", "end"):
            print(f"edgerun: {e['kind']}: {e.get('detail', '')}", file=sys.stderr, flush=True)


def _total(src, max_frames: int | None) -> int | None:
    """Frames to come, when known: an image folder's files or a video file's frame count."""
    n = None
    if isinstance(src, ImageSource):
        n = len(src.files)
    elif isinstance(src, VideoSource) and not src.live:
        import cv2
        cap = cv2.VideoCapture(str(src.target))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        cap.release()
        n = n if n > 0 else None
    if n is None or max_frames is None:
        return max_frames if n is None else n
    return min(n, max_frames)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
