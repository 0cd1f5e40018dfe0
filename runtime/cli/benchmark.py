"""``edgerun benchmark MODEL [SOURCE]``: configuration, validation and the run itself.

``run(BenchConfig)`` returns the JSON-ready result (schema in ``bench_report``); ``benchmarks/``
calls it directly, the CLI through ``run_benchmark(args)``.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from edgerun.kernels.errors import EdgerunValueError

from . import check_output_file, compile_notice
from ..bench import report
from ..bench import Case, EdgerunPipeline, Recorder, machine_record, measure, rss_mb
from ..bench.inputs import PIXEL_FORMATS, FrameSource
from ..session import SPIN_MODES
from ..progress import Progress

__all__ = ["BenchConfig", "BenchUsageError", "run", "run_benchmark", "add_arguments"]


class BenchUsageError(EdgerunValueError):
    """Conflicting or out-of-range benchmark options (exit status 2)."""


@dataclass
class BenchConfig:
    model: str
    source: str | None = None  # None: the demo's sample scene
    iterations: int | None = None  # default 100 when duration is None too
    duration: float | None = None
    warmup: int = 10
    threads: tuple[int, ...] = (0,)  # 0: edgerun's CPU budget
    imgsz: tuple[int, int] | None = None
    pixel_format: str = "bgr"
    batch: int = 1
    compare: tuple[str, ...] = ()
    soak: int = 0
    cold_runs: int = 0
    cold_miss: bool = False
    spin: bool | str | None = None  # None: session.DEFAULT_SPIN
    progress: bool = False
    command: list[str] = field(default_factory=list)


def add_arguments(p) -> None:
    """The ``benchmark`` subcommand's options (called by cli.py)."""
    p.add_argument("model", help="ONNX detector")
    p.add_argument("source", nargs="?", help="image, directory, glob or video (default: demo scene)")
    p.add_argument("--iterations", type=int, help="measured iterations per case (default 100)")
    p.add_argument("--duration", type=float, help="measure for this many seconds instead")
    p.add_argument("--warmup", type=int, default=10, help="warm-up iterations, reported apart (default 10)")
    p.add_argument("--threads", default="0", help="ORT threads, a comma list sweeps: 1,2 (0 = all usable)")
    p.add_argument("--imgsz", type=int, nargs="+", help="input size H [W] (dynamic-shape models)")
    p.add_argument("--pixel-format", default="bgr", choices=PIXEL_FORMATS,
                   help="frame format fed to the detector; non-BGR frames are converted once up front")
    p.add_argument("--batch", type=int, default=1, help="frames per inference (dynamic-batch models)")
    p.add_argument("--spin", nargs="?", const="on", default=None, choices=SPIN_MODES,
                   help="ORT intra-op spin-waiting: auto (stop while the other processes leave the cores idle, "
                        "else off), off, on (bare --spin), or stop (spin inside run() only, "
                        "session.force_spinning_stop); default: edgerun's DEFAULT_SPIN")
    p.add_argument("--compare", action="append", choices=("baseline", "ultralytics"), default=[],
                   help="also run a peer on the same inputs, interleaved; prints per-stage ratios")
    p.add_argument("--soak", type=int, default=0, metavar="N", help="N more frames tracking RSS growth")
    p.add_argument("--cold", type=int, default=0, metavar="N",
                   help="N fresh-process cold starts (kernel cache hit) -> first detection + peak RSS")
    p.add_argument("--cold-miss", action="store_true", help="also one cold start compiling all kernels")
    p.add_argument("--json", metavar="FILE", help="write results as JSON (schema edgerun.benchmark/1)")
    p.add_argument("--csv", metavar="FILE", help="write one row per case and stage")
    p.add_argument("--plot", metavar="FILE.png", help="per-stage breakdown + latency histogram PNG (needs matplotlib)")


def config_from_args(args) -> BenchConfig:
    try:
        threads = tuple(int(t) for t in str(args.threads).split(",") if t.strip())
    except ValueError:
        raise BenchUsageError(f"--threads: expected integers like 1,2, got {args.threads!r}") from None
    imgsz = None
    if args.imgsz:
        imgsz = (args.imgsz[0], args.imgsz[0]) if len(args.imgsz) == 1 else tuple(args.imgsz[:2])
    return BenchConfig(model=args.model, source=args.source, iterations=args.iterations,
                       duration=args.duration, warmup=args.warmup, threads=threads, imgsz=imgsz,
                       pixel_format=args.pixel_format, batch=args.batch, compare=tuple(args.compare),
                       soak=args.soak, cold_runs=args.cold, cold_miss=args.cold_miss, spin=args.spin,
                       progress=True, command=list(sys.argv))  # Progress: a bar on a TTY, lines when piped


def validate(cfg: BenchConfig, outputs: tuple[str | None, ...] = ()) -> None:
    """Refuse bad options before measuring anything (messages name the option and the fix)."""
    if not os.path.isfile(cfg.model):
        raise BenchUsageError(f"model file not found: {cfg.model}")
    if cfg.source is not None and not os.path.exists(cfg.source) and not any(c in cfg.source for c in "*?["):
        raise BenchUsageError(f"source not found: {cfg.source}")
    if cfg.iterations is not None and cfg.duration is not None:
        raise BenchUsageError("--iterations and --duration conflict: give one of them")
    if cfg.iterations is not None and cfg.iterations <= 0:
        raise BenchUsageError(f"--iterations: expected a positive count, got {cfg.iterations}")
    if cfg.duration is not None and not cfg.duration > 0:
        raise BenchUsageError(f"--duration: expected a positive number of seconds, got {cfg.duration}")
    checks = [("--warmup", cfg.warmup, 0), ("--batch", cfg.batch, 1), ("--soak", cfg.soak, 0),
              ("--cold", cfg.cold_runs, 0)]
    for name, value, low in checks:
        if value < low:
            raise BenchUsageError(f"{name}: expected >= {low}, got {value}")
    if not cfg.threads or any(t < 0 for t in cfg.threads) or len(set(cfg.threads)) != len(cfg.threads):
        raise BenchUsageError(f"--threads: expected distinct counts >= 0 like 1,2, got {cfg.threads}")
    if cfg.imgsz and min(cfg.imgsz) <= 0:
        raise BenchUsageError(f"--imgsz: expected positive sizes, got {cfg.imgsz}")
    if cfg.soak and cfg.compare:
        raise BenchUsageError("--soak measures edgerun's own memory; run it without --compare")
    if cfg.cold_miss and not cfg.cold_runs:
        raise BenchUsageError("--cold-miss needs --cold N (N >= 1)")
    files = [o for o in outputs if o]
    if len(set(map(os.path.abspath, files))) != len(files):
        raise BenchUsageError(f"--json/--csv/--plot must name different files, got {files}")
    for option, path in zip(("--json", "--csv", "--plot"), outputs):
        check_output_file(path, option)  # before measuring: never lose a run to a bad path


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Measure every case of ``cfg``; Ctrl-C keeps what was measured (``interrupted``: true)."""
    result: dict[str, Any] = {"schema": report.SCHEMA, "created": datetime.now(timezone.utc).isoformat(),
                              "command": cfg.command, "machine": None, "cases": [], "ratios": [],
                              "cold_start": None, "soak": None, "interrupted": False}
    source_path = cfg.source or _demo_scene()
    src = FrameSource(source_path, cfg.pixel_format)
    ort_threads = []
    try:
        for group, n in enumerate(cfg.threads):
            cases = _measure_group(cfg, src, source_path, n, group)
            ort_threads.append(cases[0].params["threads"])
            result["cases"] += [c.to_dict() for c in cases]
            if any(c.interrupted for c in cases):
                raise KeyboardInterrupt
        if cfg.soak:
            result["soak"] = soak(cfg, src)
        if cfg.cold_runs:
            result["cold_start"] = _cold(cfg, src, source_path)
    except KeyboardInterrupt:
        result["interrupted"] = True
    finally:
        src.close()
        result["machine"] = machine_record(ort_threads)
        result["ratios"] = report.ratios(result["cases"])
    return result


def _cold(cfg: BenchConfig, src: FrameSource, source_path: str) -> dict[str, Any]:
    """Cold starts on the source image (the demo scene for videos/directories); a failing child
    is reported in the result and on stderr instead of losing the measurements taken so far."""
    from ..bench.cold import ColdStartError, cold_start

    image = source_path if src.kind == "images" and os.path.isfile(source_path) else _demo_scene()
    try:
        return cold_start(cfg.model, image, runs=cfg.cold_runs, miss=cfg.cold_miss,
                          threads=cfg.threads[-1], spin=cfg.spin, pixel_format=cfg.pixel_format)
    except (ColdStartError, OSError, ValueError) as exc:
        print(f"edgerun benchmark: cold start failed: {exc}", file=sys.stderr)
        return {"error": str(exc)}


def _measure_group(cfg: BenchConfig, src: FrameSource, source_path: str, threads: int, group: int
                   ) -> list[Case]:
    """edgerun (+ peers) at one thread count, interleaved iteration by iteration."""
    from ..bench.peers import make_peer

    det = _detector(cfg, threads)
    pipes = [EdgerunPipeline(det, cfg.pixel_format, cfg.batch)]
    pipes += [make_peer(kind, det, cfg.pixel_format, cfg.imgsz) for kind in cfg.compare]
    params = {"model": os.path.basename(cfg.model), "model_path": os.path.abspath(cfg.model),
              "source": source_path, "threads": det.session.threads, "spin": det.session.spin,
              "spin_active": det.session.spin_active,
              "pixel_format": cfg.pixel_format, "input_size": list(det.spec.input_size),
              "batch": cfg.batch, "group": group, "numba_threads": _numba_threads()}
    cases = [Case(f"{p.name}@{det.session.threads}t", p.name, params, Recorder(), frames_per_iteration=cfg.batch)
             for p in pipes]
    iterations = cfg.iterations if cfg.iterations or cfg.duration else 100
    bar = Progress(cases[0].name, None if cfg.duration else iterations, "it",
                   enabled=cfg.progress)
    try:
        measure(pipes, cases, src, iterations=iterations, duration=cfg.duration, warmup=cfg.warmup,
                progress=_progress(bar))
    finally:
        bar.close()
    return cases


def _detector(cfg: BenchConfig, threads: int):
    from ..tasks.dispatch import open_model

    overrides = {"input_size": cfg.imgsz} if cfg.imgsz else {}
    det = open_model(cfg.model, threads=threads or None, spin=cfg.spin, **overrides)  # any task
    shape = det.session.inputs[0].shape
    hw = shape[2:4] if det.spec.layout == "nchw" else shape[1:3]
    if cfg.imgsz and all(isinstance(d, int) for d in hw) and tuple(hw) != tuple(cfg.imgsz):
        raise BenchUsageError(f"--imgsz {cfg.imgsz}: {cfg.model} has a fixed input of {tuple(hw)}")
    if cfg.batch > 1 and not det.spec.dynamic_batch:
        raise BenchUsageError(f"--batch {cfg.batch}: {cfg.model} has a fixed batch of 1")
    return det


def _numba_threads() -> int:
    import numba
    return numba.get_num_threads()


def _demo_scene() -> str:
    from ..demo import sample_scene_path
    return sample_scene_path()


def _progress(bar: Progress):
    """``measure``'s callback (iterations done so far) feeding ``bar``."""
    def show(i: int, total: int | None, elapsed: float) -> None:
        if i > bar.n:
            bar.update(i - bar.n)
    return show


def soak(cfg: BenchConfig, src: FrameSource, samples: int = 100) -> dict[str, Any]:
    """``cfg.soak`` frames through edgerun, RSS sampled; slope fitted after the first 10% (settling)."""
    det = _detector(cfg, cfg.threads[0])
    pipe, rec = EdgerunPipeline(det, cfg.pixel_format, cfg.batch), Recorder()
    every = max(1, cfg.soak // samples)
    points = [(0, rss_mb())]
    try:
        for i in range(cfg.soak):
            image, ms = src.read(i)
            rec.begin(ms)
            pipe.run(image, rec)
            rec.end(warm=True)  # keep nothing but end-to-end ms: memory flat
            if (i + 1) % every == 0:
                points.append((i + 1, rss_mb()))
                rec.warmup.clear()
    except KeyboardInterrupt:
        pass
    tail = [p for p in points if p[0] >= 0.1 * points[-1][0]]
    slope = float(np.polyfit(*zip(*tail), 1)[0]) * 1000 if len(tail) > 2 else float("nan")
    return {"frames": points[-1][0], "rss_mb": [[f, round(m, 2)] for f, m in points],
            "slope_mb_per_1k_frames": round(slope, 4)}


def run_benchmark(args) -> int:
    """The CLI entry: validate, measure, print the summary, write --json/--csv/--plot."""
    cfg = config_from_args(args)
    validate(cfg, (args.json, args.csv, args.plot))
    if args.plot and not report.plot_available():
        raise BenchUsageError("--plot needs matplotlib, which is not installed (pip install matplotlib); "
                              "--json/--csv work without it")
    t0 = time.perf_counter()
    compile_notice()
    result = run(cfg)
    print(report.summary_block(result))
    if args.json:
        report.write_json(result, args.json)
    if args.csv:
        report.write_csv(result, args.csv)
    if args.plot and result["cases"]:
        report.plot(result, args.plot)
    print(f"edgerun benchmark: {time.perf_counter() - t0:.1f} s"
          + ("; interrupted, partial results above" if result["interrupted"] else ""), file=sys.stderr)
    return 130 if result["interrupted"] else 0
