"""edgerun vs its peers and vs bare ONNX Runtime, side by side in one process (issue 15's table).

    python benchmarks/bench_peers.py [--rounds 2] [--iterations 20] [--load N] [--json FILE]

Per model and photo (default yolov8n_640_fp32dq and yolov8n_320_int8dyn on bus.jpg and zidane.jpg,
``--threads`` = edgerun's CPU budget), each configuration runs in **blocks**: ``--warmup`` untimed
calls, then ``--iterations`` timed calls, then a ``--pause`` so spinning threads park before the next
block. The block sequence repeats ``--rounds`` times (reversed every other round); a configuration's
figure is its **best block median** (the least disturbed round). Configurations:

- ``bare off`` / ``bare on`` / ``bare stop``: ``Session.run`` on an already prepared tensor, ORT spin
  off, on, on + ``session.force_spinning_stop``; the best of the three is the reference (ratio 1.00);
- ``detect default`` (``session.DEFAULT_SPIN``) and ``detect off`` / ``on`` / ``stop``: the whole
  ``Detector.detect`` on the decoded photo;
- ``numpy+OpenCV``: ``runtime/bench/peers.BaselinePipeline`` (cv2 letterbox, plain
  ``InferenceSession.run`` with the default spin, numpy decode, ``cv2.dnn.NMSBoxesBatched``);
- ``Ultralytics``: ``YOLO(onnx).predict`` on the same file (its own ORT session, ORT's default
  options), "not installed" when the package is absent.

Also measured: stream ``every_frame`` throughput (``bench_stream.stream_rate``, default split, each
spin mode) vs a sequential ``detect()`` loop (``bench_stream.sequential_rate``) on ``--stream-video``,
interleaved per round; peak RSS (``VmHWM``) of a fresh detection process (``bench.cold.spawn_once``);
camera frames 1080p -> 640 (NV12, I420, YUYV) through ``letterbox`` vs OpenCV's conversion + chain
(``bench_preprocess``), OpenCV at ``--threads`` threads, edgerun's kernels serial.

No kernel on the ``detect()`` path is ``parallel=True``, so Numba's thread pool never starts there
(the JSON records ``numba_threading_layer`` after every call was made): there is no Numba thread
count to vary inside ``detect()``.

``--load N`` starts N busy single-threaded numpy loops in subprocesses for the loaded condition
(stopped at the end, and by themselves if this process dies). The load average is printed at start
and end: judge the quiet-machine targets only on a run that started near 0.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench_stream / bench_preprocess / _shared: reused, not duplicated

from _shared import SHARED  # noqa: E402

MODELS = ("yolov8n_640_fp32dq.onnx", "yolov8n_320_int8dyn.onnx")
IMAGES = ("bus.jpg", "zidane.jpg")
SPINS = ("off", "on", "stop")
CAMERA_FORMATS = ("nv12", "i420", "yuyv")
TARGETS = {"detect_default / best_bare (quiet)": 1.03, "detect_default / best_bare (loaded)": 1.05,
           "ultralytics / detect_default": 1.08, "stream every_frame / sequential": 1.05,
           "camera 1080p->640 opencv / edgerun": 4.0, "peak RSS MB": 250.0}

_BUSY = """import os, sys
import numpy as np
parent = int(sys.argv[1])
x = np.random.default_rng(0).random(1 << 15)
y = np.empty_like(x)
while os.getppid() == parent:
    for _ in range(200):
        np.sin(x, out=y)
"""


# -- load ---------------------------------------------------------------------------------------
def start_load(n: int) -> list[subprocess.Popen]:
    """``n`` busy single-threaded numpy loops; each exits by itself when this process is gone."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _BUSY, str(os.getpid())], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL) for _ in range(n)]
    time.sleep(0.5 if n else 0.0)  # let them start spinning before anything is measured
    return procs


def stop_load(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- configurations -------------------------------------------------------------------------------
def ultralytics_peer(detector) -> tuple[Any, str | None]:
    """(Ultralytics peer or None, reason when unavailable). Imported lazily: torch is heavy."""
    from edgerun.runtime.bench.peers import PeerUnavailable, UltralyticsPipeline

    try:
        return UltralyticsPipeline(detector), None
    except PeerUnavailable as exc:
        reason = "not installed" if "not installed" in str(exc) else str(exc)
        return None, reason
    except Exception as exc:  # noqa: BLE001 - a peer that cannot load this model is a table entry
        return None, f"failed to load: {type(exc).__name__}: {exc}"


def build_model(path: str, threads: int, with_ultralytics: bool) -> dict[str, Any]:
    """Every session/detector/peer of one model, created once (reused for every photo)."""
    import cv2

    from edgerun.runtime import Detector, Session
    from edgerun.runtime.bench.peers import BaselinePipeline, PeerUnavailable

    m: dict[str, Any] = {"bare": {s: Session(path, threads=threads, spin=s) for s in SPINS},
                         "detect": {"default": Detector.from_path(path, threads=threads)},
                         "unavailable": {}}
    m["detect"].update({s: Detector.from_path(path, threads=threads, spin=s) for s in SPINS})
    default = m["detect"]["default"]
    try:
        m["baseline"] = BaselinePipeline(default)
    except PeerUnavailable as exc:
        m["baseline"], m["unavailable"]["numpy+OpenCV"] = None, str(exc)
    skipped = (None, "skipped (--no-ultralytics)")
    m["ultralytics"], reason = ultralytics_peer(default) if with_ultralytics else skipped
    if reason:
        m["unavailable"]["Ultralytics"] = reason
    cv2.setNumThreads(threads)  # importing ultralytics sets cv2 to 0 threads; the peers get ours
    return m


def configs_for(m: dict[str, Any], image: np.ndarray) -> tuple[dict[str, Callable[[], Any]], dict[str, int]]:
    """Callables per configuration for one photo, and the boxes each one finds (a sanity check)."""
    from edgerun.runtime.bench import Recorder

    default = m["detect"]["default"]
    tensor = default.preprocess(image)[0].copy()
    fns: dict[str, Callable[[], Any]] = {}
    for s, sess in m["bare"].items():
        feed = {sess.inputs[0].name: tensor}
        fns[f"bare {s}"] = lambda sess=sess, feed=feed: sess.run(feed)
    for s, det in m["detect"].items():
        fns[f"detect {s}"] = lambda det=det: det.detect(image)
    boxes = {k: len(fns[k]()) for k in fns if k.startswith("detect")}
    rec = Recorder()
    if m["baseline"] is not None:
        fns["numpy+OpenCV"] = lambda: m["baseline"].run(image, rec)
        boxes["numpy+OpenCV"] = len(fns["numpy+OpenCV"]()[1])
    if m["ultralytics"] is not None:
        fns["Ultralytics"] = lambda: m["ultralytics"].run(image, rec)
        boxes["Ultralytics"] = len(fns["Ultralytics"]().boxes)
    return fns, boxes


def close_model(m: dict[str, Any]) -> None:
    for det in m["detect"].values():
        det.close()


# -- blocks ----------------------------------------------------------------------------------------
def run_blocks(fns: dict[str, Callable[[], Any]], *, rounds: int, iterations: int, warmup: int,
               pause: float, progress=None) -> dict[str, dict[str, Any]]:
    """Each callable in blocks of ``iterations`` timed calls, the sequence repeated ``rounds`` times
    (reversed every other round). Per configuration: block medians, best median, CPU utilisation."""
    from edgerun.runtime.bench import summarize, time_calls

    out = {k: {"block_median_ms": [], "block_p90_ms": [], "cpu_util": [], "warmup_ms": []} for k in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            for _ in range(warmup):  # timed apart: the first calls after another block's threads
                fns[name]()
            out[name]["warmup_ms"].append(round((time.perf_counter() - t0) * 1e3 / max(1, warmup), 3))
            samples, wall, cpu = time_calls(fns[name], iterations, warmup=0)
            s = summarize(samples)
            out[name]["block_median_ms"].append(round(s["median"], 3))
            out[name]["block_p90_ms"].append(round(s["p90"], 3))
            out[name]["cpu_util"].append(round(cpu / wall, 3) if wall > 0 else 0.0)
            if progress is not None:
                progress.update(1)
            time.sleep(pause)
    for v in out.values():
        v["best_median_ms"] = min(v["block_median_ms"])
    best_bare = min((v["best_median_ms"] for k, v in out.items() if k.startswith("bare")), default=None)
    for v in out.values():
        if best_bare:  # other callers (bench_runtimes) name their rows otherwise and take their own ratio
            v["ratio_to_best_bare"] = round(v["best_median_ms"] / best_bare, 4)
    return out


# -- stream, RSS, camera ------------------------------------------------------------------------
def measure_stream(path: str, video: str, threads: int, frames: int, rounds: int) -> dict[str, Any]:
    """every_frame stream throughput (fps) vs a sequential detect() loop, interleaved per round.

    Cases: the default split (``choose_split``: one single-thread session per core, where spin has
    no effect: ORT has no intra-op pool at 1 thread) and one session of ``threads`` threads per spin
    mode (``1xN off/on/stop``)."""
    from bench_stream import sequential_rate, stream_rate

    from edgerun.runtime import Detector
    from edgerun.runtime.session import DEFAULT_SPIN
    from edgerun.runtime.streaming.split import choose_split

    dets = {s: Detector.from_path(path, threads=threads, spin=s) for s in SPINS}
    default = dets["default"] = Detector.from_path(path, threads=threads)
    w, t = choose_split(threads, "every_frame")
    auto = f"stream auto {w}x{t}"
    runs = {"sequential": lambda: sequential_rate(default, video, frames),
            auto: lambda: stream_rate(default, video, frames, w, t)}
    if (w, t) != (1, threads):
        runs.update({f"stream 1x{threads} {s}": (lambda d=dets[s]: stream_rate(d, video, frames, 1, threads))
                     for s in SPINS})
    fps: dict[str, list[float]] = {k: [] for k in runs}
    names = list(runs)
    for r in range(rounds):
        for k in names if r % 2 == 0 else names[::-1]:
            fps[k].append(round(runs[k](), 3))
    for d in dets.values():
        d.close()
    seq = fps["sequential"]
    ratios = {k: {"per_round": [round(a / b, 4) for a, b in zip(v, seq)],
                  "best_over_best": round(max(v) / max(seq), 4)} for k, v in fps.items() if k != "sequential"}
    return {"model": Path(path).name, "video": video, "frames": frames, "default_spin": DEFAULT_SPIN,
            "default_case": auto, "fps": fps, "best_fps": {k: max(v) for k, v in fps.items()},
            "ratio_to_sequential": ratios}


def measure_rss(path: str, image: str, threads: int) -> dict[str, Any]:
    """Peak RSS (VmHWM) of a fresh process that opens the model and detects on ``image``."""
    from edgerun.runtime.bench.cold import spawn_once

    rep = spawn_once(path, image, threads=threads)
    return {"model": Path(path).name, "peak_rss_mb": rep["peak_rss_mb"], "detections": rep["detections"]}


def measure_camera(threads: int, samples: int) -> list[dict[str, Any]]:
    """1080p camera buffers -> 640 tensor: edgerun letterbox (serial) vs OpenCV convert + chain, the chain in
    its fastest heap state (``bench_preprocess.Heap``: glibc pinned warm; as found elsewhere)."""
    import cv2
    from bench_preprocess import Heap, camera_frame, opencv_chain

    from edgerun.kernels import letterbox
    from edgerun.runtime.bench import interleaved

    cv2.setNumThreads(threads)
    heap = "warm (pinned)" if Heap().pin() else "as found (not glibc)"
    out = []
    for fmt in CAMERA_FORMATS:
        frame = camera_frame(1080, 1920, fmt)
        buf = np.empty((3, 640, 640), np.float32)
        res = interleaved({"edgerun": lambda f=frame, fm=fmt: letterbox(f, 640, pixel_format=fm, out=buf),
                           "opencv": opencv_chain(frame, fmt, 640)}, samples)
        out.append({"format": fmt, "edgerun_ms": round(res["edgerun"]["median"], 3),
                    "opencv_ms": round(res["opencv"]["median"], 3), "cv2_threads": cv2.getNumThreads(), "heap": heap,
                    "ratio": round(res["opencv"]["median"] / res["edgerun"]["median"], 3)})
    return out


# -- report ---------------------------------------------------------------------------------------
COLUMNS = ("bare off", "bare on", "bare stop", "detect default", "detect off", "detect on", "detect stop",
           "numpy+OpenCV", "Ultralytics")


def table(results: list[dict[str, Any]]) -> list[str]:
    """Issue 15's table: best block median ms and (ratio to the best bare configuration)."""
    lines = ["| model | image | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for r in results:
        cells = []
        for c in COLUMNS:
            v = r["configs"].get(c)
            cells.append(f"{v['best_median_ms']:.1f} ({v['ratio_to_best_bare']:.2f})" if v
                         else r["unavailable"].get(c, "-"))
        lines.append(f"| {r['model']} | {r['image']} | " + " | ".join(cells) + " |")
    return lines


def target_lines(report: dict[str, Any]) -> list[str]:
    """Each issue target with the ratio measured in this run (met / missed against the bound)."""
    out = []

    def line(what: str, value: float, bound: float, higher_is_better: bool) -> None:
        ok = value >= bound if higher_is_better else value <= bound
        out.append(f"- {what}: {value:.3f} ({'>=' if higher_is_better else '<='} {bound}: "
                   f"{'met' if ok else 'MISSED'})")

    other = report.get("other_cores")
    busy = other > 0.25 if other is not None else report["load_avg_start"][0] > 0.25 * report["threads"]
    cond = "loaded" if report["load"] or busy else "quiet"
    seen = f"other processes used {other:.2f} cores during the blocks, " if other is not None else ""
    out.append(f"- condition: {cond} (--load {report['load']}, {seen}load average at start "
               f"{report['load_avg_start']}, at end {report['load_avg_end']})")
    for r in report["results"]:
        c, tag = r["configs"], f"{r['model']} {r['image']}"
        line(f"{tag} detect default / best bare ({cond})", c["detect default"]["ratio_to_best_bare"],
             TARGETS[f"detect_default / best_bare ({cond})"], False)
        best_mode = min((c[f"detect {s}"]["best_median_ms"], s) for s in SPINS)
        active = f" (default ran as {r['default_spin_active']!r})" if r.get("default_spin_active") else ""
        out.append(f"- {tag} detect default / best detect mode ({best_mode[1]}): "
                   f"{c['detect default']['best_median_ms'] / best_mode[0]:.3f}{active}")
        if "Ultralytics" in c:
            line(f"{tag} Ultralytics / detect default", c["Ultralytics"]["best_median_ms"]
                 / c["detect default"]["best_median_ms"], TARGETS["ultralytics / detect_default"], True)
    if report.get("stream"):
        s = report["stream"]
        k = s["default_case"]
        line(f"{s['model']} {k} / sequential detect(), best fps over best fps",
             s["ratio_to_sequential"][k]["best_over_best"], TARGETS["stream every_frame / sequential"], True)
    for cam in report.get("camera") or []:
        line(f"camera {cam['format']} 1080p->640 OpenCV / edgerun", cam["ratio"],
             TARGETS["camera 1080p->640 opencv / edgerun"], True)
    for rss in report.get("rss") or []:
        line(f"{rss['model']} peak RSS MB (VmHWM of a detection process)", rss["peak_rss_mb"],
             TARGETS["peak RSS MB"], False)
    return out


def resolve(names: list[str], folder: str) -> list[str]:
    """Paths as given, else names under ../shared/<folder>; absent ones are reported and skipped."""
    out = []
    for n in names:
        p = Path(n) if (os.sep in n or Path(n).exists()) else SHARED / folder / n
        if p.exists():
            out.append(str(p))
        else:
            print(f"bench_peers: skipped {p} (absent)", file=sys.stderr)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from edgerun.runtime import cpu_budget

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), help="names under ../shared/models or paths")
    ap.add_argument("--images", nargs="+", default=list(IMAGES), help="names under ../shared/images or paths")
    ap.add_argument("--threads", type=int, default=cpu_budget(), help="ORT intra-op threads (and cv2's)")
    ap.add_argument("--rounds", type=int, default=2, help="block sequences (>= 2; best block median kept)")
    ap.add_argument("--iterations", type=int, default=20, help="timed calls per block")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls at the start of each block")
    ap.add_argument("--pause", type=float, default=0.3, help="seconds between blocks")
    ap.add_argument("--load", type=int, default=0, metavar="N", help="N busy subprocesses during the run")
    ap.add_argument("--no-ultralytics", action="store_true", help="leave Ultralytics out (no torch import)")
    ap.add_argument("--stream-video", default=str(SHARED / "video" / "vtest.avi"))
    ap.add_argument("--stream-frames", type=int, default=60, help="frames per stream/sequential run")
    ap.add_argument("--no-stream", action="store_true")
    ap.add_argument("--no-rss", action="store_true")
    ap.add_argument("--camera-samples", type=int, default=21, help="0 leaves the camera formats out")
    ap.add_argument("--json", help="write the full report here")
    return parse_timing_args(ap, argv)


def parse_timing_args(ap: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, refusing block counts no benchmark can run (shared by bench_peers and bench_runtimes)."""
    a = ap.parse_args(argv)
    if a.rounds < 1 or a.iterations < 1 or a.warmup < 0 or a.threads < 1:
        ap.error("--rounds, --iterations and --threads must be >= 1, --warmup >= 0")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    import cv2

    from edgerun.runtime.bench import machine_record
    from edgerun.runtime.cpuload import OtherLoad
    from edgerun.runtime.progress import Progress
    from edgerun.runtime.session import DEFAULT_SPIN

    models, images = resolve(a.models, "models"), resolve(a.images, "images")
    if not models or not images:
        print("bench_peers: no model or no image to measure", file=sys.stderr)
        return 0
    photos = {p: cv2.imread(p) for p in images}
    report: dict[str, Any] = {"threads": a.threads, "load": a.load, "default_spin": DEFAULT_SPIN,
                              "args": vars(a), "load_avg_start": loadavg(), "results": []}
    print(f"load average at start {report['load_avg_start']} (--load {a.load}); threads {a.threads}; "
          f"default spin {DEFAULT_SPIN!r}", flush=True)
    procs = start_load(a.load)
    others = OtherLoad()  # cores the other processes (the --load loops too) use during the blocks
    t0, phase = time.perf_counter(), report.setdefault("phase_s", {})
    try:
        n_cfg = len(COLUMNS) - a.no_ultralytics
        prog = Progress("bench_peers", total=len(models) * len(images) * a.rounds * n_cfg, unit="block")
        for path in models:
            m = build_model(path, a.threads, not a.no_ultralytics)
            for img_path, img in photos.items():
                fns, boxes = configs_for(m, img)
                cfg = run_blocks(fns, rounds=a.rounds, iterations=a.iterations, warmup=a.warmup,
                                 pause=a.pause, progress=prog)
                report["results"].append({"model": Path(path).name, "image": Path(img_path).name,
                                          "configs": cfg, "boxes": boxes, "unavailable": m["unavailable"],
                                          "default_spin_active": m["detect"]["default"].session.spin_active})
            close_model(m)
        prog.close()
        phase["blocks"] = time.perf_counter() - t0
        report["other_cores"] = others.sample()
        report["numba_threading_layer"] = machine_record()["threads"]["numba_threading_layer"]
        if not a.no_stream and Path(a.stream_video).exists():
            report["stream"] = measure_stream(models[0], a.stream_video, a.threads, a.stream_frames, a.rounds)
            phase["stream"] = time.perf_counter() - t0 - sum(phase.values())
        if not a.no_rss:
            report["rss"] = [measure_rss(p, images[0], a.threads) for p in models]
            phase["rss"] = time.perf_counter() - t0 - sum(phase.values())
        if a.camera_samples:
            report["camera"] = measure_camera(a.threads, a.camera_samples)
            phase["camera"] = time.perf_counter() - t0 - sum(phase.values())
    finally:
        stop_load(procs)
    report["load_avg_end"] = loadavg()
    report["machine"] = machine_record([a.threads])
    print("\n".join(table(report["results"])))
    if report.get("stream"):
        print("stream fps (per round):", json.dumps(report["stream"]["fps"]))
    print("\n".join(target_lines(report)))
    print(f"Numba threading layer after every detect(): {report['numba_threading_layer']}")
    report["phase_s"] = {k: round(v, 2) for k, v in report["phase_s"].items()}
    print("seconds per phase:", report["phase_s"])
    for w in report["machine"]["warnings"]:
        print("warning:", w)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
