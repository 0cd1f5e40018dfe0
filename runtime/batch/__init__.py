"""Offline batch inference on Ray Data: ``edgerun batch`` and the ``BatchDetector`` callable class
(any task ``open_model`` opens: detect, segment, pose, face, classify, semantic).

Ray is an optional extra (``pip install "edgerun[ray]"``), imported lazily.

Python API, for Ray Data users::

    import ray
    from edgerun.runtime.batch import BatchDetector, actor_cpus

    ds = ray.data.read_binary_files("s3://bucket/photos/", include_paths=True)
    out = ds.map_batches(BatchDetector, fn_constructor_kwargs={"model": "/models/yolov8n.onnx"},
                         compute=ray.data.ActorPoolStrategy(size=4), num_cpus=actor_cpus(1),
                         batch_size=16)
    out.write_parquet("s3://bucket/detections/")

Each actor opens one ONNX Runtime session whose intra-op threads equal the CPUs Ray assigned to
it. A batch holds one of these columns: ``bytes`` (encoded images, as ``read_binary_files``
gives), ``image`` (decoded uint8 BGR frames) or ``path`` (files read inside the actor; a video
yields every frame, in order). ``path``/``source`` and ``frame`` name the rows. The result is an
Arrow table with ``row_schema()``: the fields of ``edgerun predict --json`` plus ``error`` (null when
fine) and ``worker`` (host:pid of the actor).

Resource sizing that cannot deadlock: Ray Data's read tasks need CPU slots too (1 CPU each by
default), so actors that reserve every CPU starve them and the job hangs (two 1-CPU actors on two
cores do). ``actor_cpus(threads)`` reserves ``threads - 0.5``: two actors on two cores leave a whole
CPU for reads. ``edgerun batch`` also reads files inside the actors (its dataset holds paths, so
there are no read tasks at all).
"""
from __future__ import annotations

import os
import socket
from typing import Any, Iterator, Sequence

import numpy as np

from edgerun.kernels.errors import EdgerunError

from ..results import frame_record
from ..sources import Frame, ImageError, decode_image, file_frames
from ..tasks.dispatch import open_model

__all__ = ["BatchDetector", "RAY_REQUIREMENT", "actor_cpus", "decode_image",
           "require_ray", "row_schema"]

RAY_REQUIREMENT = "ray[data,client]>=2.60"  # tested on 2.60.0; `client` is for ray:// addresses
INSTALL_HINT = (f"edgerun batch needs Ray Data: pip install \"edgerun[ray]\" "
                f"(or pip install \"{RAY_REQUIREMENT}\")")
READ_SLACK = 0.5  # CPU each actor leaves unreserved, so Ray Data read tasks always get a slot


def require_ray():
    """Import ray and ray.data, or raise an ``EdgerunError`` that says how to install them."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise EdgerunError(f"{INSTALL_HINT} ({exc})") from None
    return ray


def actor_cpus(threads: int, slack: float = READ_SLACK) -> float:
    """``num_cpus`` to reserve for an actor running ``threads`` ORT threads: a little less than
    ``threads``, so N actors on N cores still leave slots for Ray Data's read tasks."""
    return max(0.05, float(threads) - slack) if threads >= 1 else float(threads)


def row_schema(task: str = "detect"):
    """The Arrow schema of one result row of a model of ``task`` (``pyarrow`` imported lazily):
    ``detections`` for box tasks, ``classes`` for classify (confidence) and semantic (fraction)."""
    import pyarrow as pa

    if task in ("classify", "semantic"):
        key, item = "classes", pa.struct([("class_id", pa.int64()), ("class_name", pa.string()),
                                          ("confidence", pa.float64()), ("fraction", pa.float64())])
    else:
        key, item = "detections", pa.struct([("xyxy", pa.list_(pa.float64())), ("confidence", pa.float64()),
                                             ("class_id", pa.int64()), ("class_name", pa.string())])
    speed = pa.struct([("preprocess", pa.float64()), ("inference", pa.float64()),
                       ("postprocess", pa.float64())])
    return pa.schema([("source", pa.string()), ("frame", pa.int64()), ("width", pa.int64()),
                      ("height", pa.int64()), (key, pa.list_(item)), ("speed_ms", speed),
                      ("error", pa.string()), ("worker", pa.string())])


def _assigned_threads() -> int:
    """Intra-op threads for this actor: the CPUs Ray assigned to it, rounded up."""
    try:
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0)
    except Exception:  # noqa: BLE001 - not inside Ray: use the process budget
        cpus = 0.0
    if cpus <= 0:
        from ..session import cpu_budget
        return cpu_budget()
    return max(1, int(np.ceil(cpus - 1e-6)))


class BatchDetector:
    """A Ray Data callable class: one task object (one ORT session) per actor, any task.

    ``ds.map_batches(BatchDetector, fn_constructor_kwargs={"model": path, ...}, ...)``; constructor
    keywords are those of ``open_model`` (``task``, ``score_threshold``, ``top_k``, ...,
    ``threads`` (default: the actor's CPUs), spec overrides; ``strict=False`` drops another task's
    options, as the CLI does).
    """

    def __init__(self, model: str, *, threads: int | None = None, crash_marker: str | None = None,
                 **options: Any):
        self.model = open_model(model, threads=threads or _assigned_threads(), **options)
        self.names = self.model.spec.names
        self.schema = row_schema(self.model.spec.task)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._crash_marker = crash_marker  # tests only: die once, mid-job, to test actor restarts
        self._calls = 0

    def __call__(self, batch: dict[str, np.ndarray]):
        """A batch of ``bytes`` / ``image`` / ``path`` rows -> an Arrow table of result rows."""
        import pyarrow as pa

        self._maybe_crash()
        rows = [self._row(frame) for frame in _frames(batch)]
        return pa.Table.from_pylist(rows, schema=self.schema)

    def _row(self, frame: Frame) -> dict[str, Any]:
        det = None
        if frame.error is None:
            try:
                det = self.model.run(frame.image)
            except EdgerunError as exc:
                frame.error = f"{frame.source}: {exc}"
        rec = frame_record(frame, det, self.names)
        rec["error"] = frame.error or None
        # a row that failed has no timings: null in the Arrow struct column (frame_record gives {})
        rec["speed_ms"] = {k: round(v, 3) for k, v in det.timings.items()} if det is not None else None
        rec["worker"] = self.worker
        return rec

    def _maybe_crash(self) -> None:
        marker, self._calls = self._crash_marker, self._calls + 1
        if marker and self._calls > 1 and os.path.exists(marker):  # after a first batch went out
            try:
                os.rename(marker, marker + ".fired")  # atomic: exactly one actor claims it
            except OSError:
                return
            os._exit(17)


def _column(batch: dict[str, np.ndarray], *names: str) -> Sequence[Any] | None:
    for name in names:
        if name in batch:
            return batch[name]
    return None


def _frames(batch: dict[str, np.ndarray]) -> Iterator[Frame]:
    """The frames of a batch, from its ``image``, ``bytes`` or ``path`` column."""
    sources = _column(batch, "source", "path")
    indices = _column(batch, "frame")
    images, blobs = _column(batch, "image"), _column(batch, "bytes")
    payload = images if images is not None else blobs
    if payload is None:
        if sources is None:
            raise EdgerunError(f"batch columns {sorted(batch)}: expected 'bytes', 'image' or 'path'")
        for path in sources:
            yield from file_frames(str(path))
        return
    for i, item in enumerate(payload):
        src = str(sources[i]) if sources is not None else f"row{i}"
        idx = int(indices[i]) if indices is not None else 0
        if images is not None:
            yield Frame(src, idx, np.ascontiguousarray(item, dtype=np.uint8))
            continue
        try:
            yield Frame(src, idx, decode_image(item, src))
        except ImageError as exc:
            yield Frame(src, idx, None, str(exc))
