"""``edgerun batch``: the detection pipeline over many files on Ray Data, into JSONL or Parquet.

Without ``--address`` a local Ray instance sized to this machine is started and shut down; with
it the job joins an existing cluster (``auto`` or ``ray://host:10001``). Files are read inside the
actors (the dataset holds paths, so no read task competes with the actors for CPUs), which means
every node must see the paths (and the model) at the same absolute location.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from edgerun.kernels.errors import EdgerunError, EdgerunValueError

from . import READ_SLACK, BatchDetector, actor_cpus, require_ray, row_schema
from ..progress import Progress
from ..sources import ImageError, expand_source, is_video

__all__ = ["BatchSummary", "run_batch", "expand_sources", "plan_units", "add_arguments", "run_cli"]

LIST_EXTS = (".txt", ".lst", ".list")
OUTPUT_EXTS = (".jsonl", ".parquet")


@dataclass
class BatchSummary:
    """What a batch job did: row and error counts, times, rows per worker (host:pid)."""

    output: str
    rows: int = 0
    errors: int = 0
    files: int = 0
    seconds: float = 0.0             # wall time, Ray start-up included
    processing_seconds: float = 0.0  # from dataset start (actor start-up, model load included)
    per_worker: dict[str, int] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / max(self.processing_seconds, 1e-9)

    def describe(self) -> str:
        workers = ", ".join(f"{w} {n}" for w, n in sorted(self.per_worker.items()))
        return (f"edgerun batch: {self.rows} rows from {self.files} files, {self.errors} errors, "
                f"{self.seconds:.1f} s wall, {self.rows_per_second:.1f} rows/s over "
                f"{self.processing_seconds:.1f} s of processing -> {self.output}\n"
                f"rows per worker: {workers or 'none'}")


# -- sources --------------------------------------------------------------------------------
def expand_sources(sources: Sequence[str]) -> list[str]:
    """Directories, globs, list files (.txt/.lst/.list: one path a line) and files -> absolute
    paths, in order, each once. Listed paths that do not exist are kept (they become error rows)."""
    out: dict[str, None] = {}
    for source in sources:
        if source.lower().endswith(LIST_EXTS) and os.path.isfile(source):
            paths = _read_list(source)
        else:
            paths = expand_source(source)
            if not paths:
                raise ImageError(f"no images or videos match {source}")
        out.update((os.path.abspath(p), None) for p in paths)
    return list(out)


def _read_list(path: str) -> list[str]:
    base = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8") as f:
        lines = [ln.strip() for ln in f]
    return [os.path.join(base, ln) for ln in lines if ln and not ln.startswith("#")]


def plan_units(paths: Sequence[str], batch_size: int) -> list[list[str]]:
    """Units of work: each video alone (one worker, frame order), images in chunks."""
    if batch_size < 1:
        raise EdgerunValueError(f"batch_size: expected >= 1, got {batch_size}")
    videos = [[p] for p in paths if is_video(p)]
    images = [p for p in paths if not is_video(p)]
    chunks = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
    return videos + chunks  # long videos first: they bound the job's duration


# -- Ray --------------------------------------------------------------------------------------
@contextmanager
def _quiet_data_context(ray: Any, verbose: bool) -> Iterator[None]:
    """Ordered output, our own progress line; the caller's DataContext and logging restored."""
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
    log = logging.getLogger("ray.data")
    level = log.level
    ctx.execution_options.preserve_order, ctx.enable_progress_bars = True, verbose
    if not verbose:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
        log.setLevel(level)


@contextmanager
def ray_connection(address: str | None, verbose: bool = False) -> Iterator[Any]:
    """Join ``address``, or start a local Ray sized to this machine; reuse one already running."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    level = logging.INFO if verbose else logging.WARNING
    if address:
        try:
            ray.init(address=address, logging_level=level)
        except (ValueError, ConnectionError, RuntimeError) as exc:
            raise EdgerunError(f"cannot join the Ray cluster at {address!r}: {exc}") from None
    else:
        from ..session import cpu_budget
        ray.init(num_cpus=cpu_budget(), include_dashboard=False, logging_level=level)
    try:
        yield ray
    finally:
        ray.shutdown()


def size_workers(cluster_cpus: float, workers: int | None, threads: int | None
                 ) -> tuple[int, int, float]:
    """(actors, ORT threads per actor, num_cpus reserved per actor). The actors together never
    reserve more than ``cluster_cpus - READ_SLACK``, so a read task always finds a slot."""
    if workers is not None and workers < 1:
        raise EdgerunValueError(f"--workers: expected >= 1, got {workers}")
    workers = workers or max(1, int(cluster_cpus // (threads or 1)))
    threads = threads or max(1, int(cluster_cpus // workers))
    reserve = min(actor_cpus(threads), (cluster_cpus - READ_SLACK) / workers)
    return workers, threads, int(reserve * 1000) / 1000  # rounded down: never over-reserve


def build_dataset(ray: Any, units: list[list[str]], model: str, workers: int, num_cpus: float,
                  detector_kwargs: dict[str, Any]) -> Any:
    """A dataset of path units mapped by a pool of ``BatchDetector`` actors."""
    import pyarrow as pa

    ds = ray.data.from_arrow([pa.table({"path": u}) for u in units])
    return ds.map_batches(BatchDetector, fn_constructor_kwargs={"model": model, **detector_kwargs},
                          batch_size=None, num_cpus=num_cpus,
                          compute=ray.data.ActorPoolStrategy(size=workers,
                                                             max_tasks_in_flight_per_actor=2))


# -- output ------------------------------------------------------------------------------------
class _AtomicWriter:
    """Rows into ``OUT.tmp-PID`` next to ``OUT``; ``commit`` renames it over ``OUT`` atomically."""

    def __init__(self, path: str, task: str = "detect"):
        self.task = task
        if not path.lower().endswith(OUTPUT_EXTS):
            raise EdgerunValueError(f"--output: expected a path ending in .jsonl or .parquet, got {path!r}")
        self.path = os.path.abspath(path)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.tmp = f"{self.path}.tmp-{os.getpid()}"
        self.parquet = self.path.lower().endswith(".parquet")
        self._pq = None
        self._f = None if self.parquet else open(self.tmp, "w", encoding="utf-8")

    def write(self, table: Any) -> None:
        table = table.drop_columns(["worker"])
        if self.parquet:
            if self._pq is None:
                import pyarrow.parquet as pq
                self._pq = pq.ParquetWriter(self.tmp, table.schema)
            self._pq.write_table(table)
            return
        for rec in table.to_pylist():
            rec["speed_ms"] = rec["speed_ms"] or {}
            self._f.write(json.dumps(rec) + "\n")

    def commit(self) -> None:
        if self.parquet and self._pq is None:  # no rows at all: still a valid, empty file
            import pyarrow as pa
            self.write(pa.Table.from_pylist([], schema=row_schema(self.task)))
        self._close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self._close()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)

    def _close(self) -> None:
        if self._pq is not None:
            self._pq.close()
        if self._f is not None:
            self._f.close()


# -- the job ---------------------------------------------------------------------------------
def run_batch(model: str, sources: Sequence[str], output: str, *, workers: int | None = None,
              address: str | None = None, batch_size: int = 8, threads: int | None = None,
              progress: bool | None = None, verbose: bool = False, **detector_kwargs: Any
              ) -> BatchSummary:
    """Run the model (any task) on every image and video frame of ``sources`` on Ray; write one row
    per frame to ``output`` (.jsonl or .parquet, replaced atomically). ``detector_kwargs`` go to
    ``BatchDetector`` / ``open_model`` (``task``, ``score_threshold``, ``top_k``, ``strict``, ...)."""
    t0 = time.perf_counter()
    require_ray()
    from ..tasks.dispatch import open_model
    # fail fast, in the driver, on a bad model or option name (crash_marker: BatchDetector's own, tests)
    probe = open_model(model, **{k: v for k, v in detector_kwargs.items() if k != "crash_marker"}, threads=1)
    task = probe.spec.task
    probe.close()
    paths = expand_sources(sources)
    units = plan_units(paths, batch_size)
    writer = _AtomicWriter(output, task)
    summary = BatchSummary(output=writer.path, files=len(paths))
    try:
        with ray_connection(address, verbose) as ray:
            cpus = float(ray.cluster_resources().get("CPU", 1.0))
            n, th, reserve = size_workers(cpus, workers, threads)
            detector_kwargs.setdefault("threads", th)
            with _quiet_data_context(ray, verbose):
                ds = build_dataset(ray, units, os.path.abspath(model), n, reserve, detector_kwargs)
                with Progress("edgerun batch", unit="rows", enabled=progress) as bar:
                    _drain(ds, writer, summary, bar)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    summary.seconds = time.perf_counter() - t0
    return summary


def _drain(ds: Any, writer: _AtomicWriter, summary: BatchSummary, progress: Progress) -> None:
    t0 = time.perf_counter()
    for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        writer.write(table)
        summary.rows += table.num_rows
        summary.errors += table.num_rows - table.column("error").null_count
        for w in table.column("worker").to_pylist():
            summary.per_worker[w] = summary.per_worker.get(w, 0) + 1
        progress.update(table.num_rows, errors=summary.errors)
    summary.processing_seconds = time.perf_counter() - t0


# -- CLI ---------------------------------------------------------------------------------------
def add_arguments(p: Any) -> None:
    """The ``edgerun batch`` arguments."""
    p.add_argument("model", help="the ONNX model (any task)")
    p.add_argument("sources", nargs="+", help="directories, globs, list files (.txt) or videos")
    p.add_argument("-o", "--output", required=True, help="OUT.jsonl or OUT.parquet (replaced)")
    p.add_argument("--workers", type=int, help="actors (default: cluster CPUs / --threads)")
    p.add_argument("--threads", type=int, help="ORT threads per actor (default: CPUs / workers)")
    p.add_argument("--address", help="join a Ray cluster: auto or ray://host:10001 "
                                     "(default: start a local Ray sized to this machine)")
    p.add_argument("--batch-size", type=int, default=8, help="images per task (default 8)")
    p.add_argument("--conf", type=float, help="score threshold (default: the task's, 0.25 for YOLO)")
    p.add_argument("--iou", type=float, help="NMS IoU threshold (default: the task's, 0.7 for YOLO)")
    p.add_argument("--max-det", type=int, help="max detections per image (default 300)")


def run_cli(args: Any) -> int:
    """Run ``edgerun batch``; 0 when every row is fine, 1 when some rows carry an error."""
    ray = require_ray()
    given = {"score_threshold": args.conf, "iou_threshold": args.iou, "max_detections": args.max_det}
    options = {k: v for k, v in given.items() if v is not None}  # None: the task's default
    try:
        summary = run_batch(args.model, args.sources, args.output, workers=args.workers,
                            address=args.address, batch_size=args.batch_size, threads=args.threads,
                            verbose=getattr(args, "verbose", False), strict=False, **options)
    except (ray.exceptions.RayError, ConnectionError) as exc:  # the cluster, not an input file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"edgerun: error: Ray: {first}", file=sys.stderr)
        return 2
    print(summary.describe(), file=sys.stderr)
    return 1 if summary.errors else 0
