"""edgerun batch on Ray Data: rows equal the single-process Detector, faults, restarts, atomic output.

One local Ray instance (2 CPUs) is shared by the module; every Ray test runs under an alarm so a
scheduling deadlock fails the test instead of hanging CI.
"""
from __future__ import annotations

import json
import os
import signal
import sys

import cv2
import pytest
from conftest import shared_file

from edgerun.runtime import Detector
from edgerun.runtime.batch import READ_SLACK
from edgerun.runtime.batch.run import plan_units, size_workers
from edgerun.runtime.cli import main
from edgerun.runtime.results import frame_record
from edgerun.runtime.sources import Frame, iter_frames, read_image

try:
    import ray
    import ray.data
except ImportError:  # the optional extra is not installed
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="Ray Data is an optional extra, not installed: "
                                                   "pip install \"edgerun[ray]\"")
TIMEOUT_S = 240  # per Ray test; generous for a shared 2-core machine
N_SUBSET = 24


@pytest.fixture(scope="module")
def model() -> str:
    return str(shared_file("models", "yolov8n_320_int8dyn.onnx"))


@pytest.fixture(scope="module")
def coco() -> str:
    return str(shared_file("datasets", "coco128", "images", "train2017"))


@pytest.fixture(scope="module")
def coco_files(coco) -> list[str]:
    return sorted(os.path.join(coco, f) for f in os.listdir(coco) if f.endswith(".jpg"))


@pytest.fixture(scope="module")
def reference(model, coco_files) -> dict[str, dict]:
    """The single-process Detector's record for every coco128 image (timings dropped)."""
    det = Detector.from_path(model, threads=1)
    out = {}
    for path in coco_files:
        image = read_image(path)
        out[path] = _comparable(frame_record(Frame(path, 0, image), det.detect(image), det.spec.names))
    return out


@pytest.fixture(scope="module")
def local_ray():
    if ray is None:
        pytest.skip("ray is not installed")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture
def deadline():
    """Fail (instead of hanging) when a Ray test exceeds TIMEOUT_S."""
    def _expired(signum, frame):
        raise TimeoutError(f"Ray test exceeded {TIMEOUT_S} s (scheduling deadlock?)")
    old = signal.signal(signal.SIGALRM, _expired)
    signal.alarm(TIMEOUT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _comparable(rec: dict) -> dict:
    rec = {k: v for k, v in rec.items() if k not in ("speed_ms", "worker")}
    rec.setdefault("error", None)
    return rec


def _jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _list_file(tmp_path, paths, name="list.txt"):
    p = tmp_path / name
    p.write_text("# inputs\n" + "\n".join(str(x) for x in paths) + "\n")
    return str(p)


def _clip(path, frames: int) -> str:
    """A short MJPG clip cut from the shared pedestrian video."""
    cap = cv2.VideoCapture(str(shared_file("video", "vtest.avi")))
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (384, 288))
    for _ in range(frames):
        ok, img = cap.read()
        assert ok
        out.write(cv2.resize(img, (384, 288)))
    out.release()
    cap.release()
    return str(path)


# -- pure helpers (no Ray needed) -------------------------------------------------------------
def test_units_keep_each_video_whole_and_chunk_images():
    paths = ["/a/1.jpg", "/a/v.mp4", "/a/2.jpg", "/a/3.png", "/a/w.avi"]
    assert plan_units(paths, 2) == [["/a/v.mp4"], ["/a/w.avi"], ["/a/1.jpg", "/a/2.jpg"],
                                    ["/a/3.png"]]


@pytest.mark.parametrize("cpus,workers", [(2, 1), (2, 2), (2, 4), (8, 8), (16, 3)])
def test_actor_reservations_always_leave_cpu_for_reads(cpus, workers):
    n, threads, reserve = size_workers(cpus, workers, None)
    assert n == workers and threads >= 1
    assert n * reserve <= cpus - READ_SLACK + 1e-9  # some CPU is always left for read tasks


def test_batch_without_ray_says_how_to_install(model, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    code = main(["batch", model, str(tmp_path), "-o", str(tmp_path / "out.jsonl")])
    assert code == 2
    assert 'pip install "edgerun[ray]"' in capsys.readouterr().err


def test_cli_and_batch_modules_import_without_ray():
    import subprocess
    code = ("import sys, edgerun.runtime.batch.run, edgerun.runtime.cli; "
            "from edgerun.runtime.cli.args import build_parser; build_parser(); "
            "assert 'ray' not in sys.modules and 'pyarrow' not in sys.modules; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/",
                       timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


@needs_ray
def test_batch_detector_columns_without_a_cluster(model, coco_files, reference):
    """The callable class itself, in-process: bytes, decoded images and paths give the same rows."""
    import numpy as np

    from edgerun.runtime.batch import BatchDetector

    files = coco_files[:2]
    blobs = [open(f, "rb").read() for f in files] + [b"\xff\xd8\xff junk"]
    udf = BatchDetector(model, threads=1)
    by_bytes = udf({"bytes": np.array(blobs, dtype=object),
                    "path": np.array(files + ["bad.jpg"], dtype=object)}).to_pylist()
    by_image = udf({"image": np.array([read_image(f) for f in files] + [None], dtype=object)[:2],
                    "source": np.array(files, dtype=object)}).to_pylist()
    by_path = udf({"path": np.array(files, dtype=object)}).to_pylist()
    for rows in (by_bytes[:2], by_image, by_path):
        assert [_comparable(r) for r in rows] == [reference[f] for f in files]
    assert "bad.jpg: not a decodable image" in by_bytes[2]["error"]


# -- Ray -----------------------------------------------------------------------------------------
@needs_ray
@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_rows_equal_the_single_process_detector(workers, model, coco, reference, local_ray,
                                                deadline, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    code = main(["batch", model, coco, "-o", str(out), "--workers", str(workers)])
    err = capsys.readouterr().err
    assert code == 0, err
    rows = _jsonl(out)
    assert len(rows) == 128 and len({r["source"] for r in rows}) == 128  # none lost, none twice
    assert [r["source"] for r in rows] == sorted(reference)  # input order kept
    for r in rows:
        assert set(r) == {"source", "frame", "width", "height", "detections", "speed_ms", "error"}
        assert _comparable(r) == reference[r["source"]]
    per_worker = err.split("rows per worker:")[1].strip().split(", ")
    assert "128 rows" in err and len(per_worker) == workers


@needs_ray
def test_bad_files_and_videos(model, coco_files, reference, local_ray, deadline, tmp_path):
    good = coco_files[:3]
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    clips = [_clip(tmp_path / "a.avi", 5), _clip(tmp_path / "b.avi", 4)]
    missing = tmp_path / "gone.jpg"
    listed = _list_file(tmp_path, good + [tmp_path / "corrupt.jpg", tmp_path / "empty.png", missing]
                        + clips)
    out = tmp_path / "out.parquet"
    code = main(["batch", model, listed, "-o", str(out), "--workers", "2", "--batch-size", "2"])
    assert code == 1  # some rows carry an error; the job went on
    import pyarrow.parquet as pq
    rows = pq.read_table(out).to_pylist()
    by_src: dict[str, list[dict]] = {}
    for r in rows:
        by_src.setdefault(os.path.basename(r["source"]), []).append(r)
    for path in good:
        (r,) = by_src[os.path.basename(path)]
        assert _comparable(r) == reference[path]
    for name in ("corrupt.jpg", "empty.png", "gone.jpg"):
        (r,) = by_src[name]
        assert r["error"] and name in r["error"] and r["detections"] == [] and r["width"] is None
    det = Detector.from_path(model, threads=1)
    for clip in clips:
        got = by_src[os.path.basename(clip)]
        want = [_comparable(frame_record(f, det.detect(f.image), det.spec.names))
                for f in iter_frames(clip)]
        assert [r["frame"] for r in got] == list(range(len(want)))  # one worker, frame order
        assert [_comparable(r) for r in got] == want


@needs_ray
def test_killed_actor_is_restarted_and_its_batch_retried(model, coco_files, reference, local_ray,
                                                         deadline, tmp_path):
    from edgerun.runtime.batch.run import run_batch

    marker = tmp_path / "crash-once"
    marker.write_text("the first actor to see this file exits")
    files = coco_files[:N_SUBSET]
    summary = run_batch(model, [_list_file(tmp_path, files)], str(tmp_path / "out.jsonl"),
                        workers=2, batch_size=4, crash_marker=str(marker))
    assert (tmp_path / "crash-once.fired").exists() and not marker.exists()  # it did die
    rows = _jsonl(tmp_path / "out.jsonl")
    assert sorted(r["source"] for r in rows) == files  # complete, no duplicates
    assert all(_comparable(r) == reference[r["source"]] for r in rows)
    assert summary.rows == N_SUBSET and summary.errors == 0
    assert len(summary.per_worker) >= 3  # two actors, plus the restart of the one that died


@needs_ray
def test_rerun_replaces_output_atomically(model, coco_files, reference, local_ray, deadline,
                                          tmp_path, monkeypatch):
    from edgerun.runtime.batch import run as batch_run

    out = tmp_path / "out.jsonl"
    out.write_text("stale rows from an earlier run\n")
    listed = _list_file(tmp_path, coco_files[:4])
    assert main(["batch", model, listed, "-o", str(out), "--workers", "1"]) == 0
    first = out.read_text()
    assert [_comparable(r) for r in _jsonl(out)] == [reference[p] for p in coco_files[:4]]

    def _fail_midway(ds, writer, summary, progress):
        for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            writer.write(table)
            raise RuntimeError("killed mid-write")
    monkeypatch.setattr(batch_run, "_drain", _fail_midway)
    with pytest.raises(RuntimeError, match="mid-write"):
        batch_run.run_batch(model, [listed], str(out), workers=1)
    assert out.read_text() == first  # the old output survives a failed run intact
    assert sorted(os.listdir(tmp_path)) == ["list.txt", "out.jsonl"]  # no temp file left


@needs_ray
def test_ray_data_api_reading_bytes_with_actors_on_every_core(model, coco_files, reference,
                                                               local_ray, deadline):
    from edgerun.runtime.batch import BatchDetector, actor_cpus

    files = coco_files[:N_SUBSET]
    ds = ray.data.read_binary_files(files, include_paths=True)  # read tasks: 1 CPU each
    out = ds.map_batches(BatchDetector, fn_constructor_kwargs={"model": model},
                         compute=ray.data.ActorPoolStrategy(size=2),  # = the cores Ray has
                         num_cpus=actor_cpus(1), batch_size=8)
    rows = [r for t in out.iter_batches(batch_size=None, batch_format="pyarrow")
            for r in t.to_pylist()]
    assert sorted(r["source"] for r in rows) == files
    assert all(_comparable(r) == reference[r["source"]] for r in rows)


@needs_ray
def test_batch_opens_any_task_classifier_rows():
    """Not only detectors: a classifier's rows carry ``classes`` (as `edgerun predict --json`), and a
    misspelled option is refused with the closest name."""
    import numpy as np

    from edgerun.runtime import open_model
    from edgerun.runtime.batch import BatchDetector

    model = str(shared_file("models", "mobilenetv2_224_imagenet_int8.onnx"))
    bus = str(shared_file("images", "bus.jpg"))
    udf = BatchDetector(model, threads=1, top_k=3, score_threshold=0.3, strict=False)
    rows = udf({"path": np.array([bus], dtype=object)}).to_pylist()
    want = frame_record(Frame(bus, 0, read_image(bus)), open_model(model, top_k=3).run(read_image(bus)), ())
    assert rows[0]["error"] is None and len(rows[0]["classes"]) == 3
    assert [c["class_id"] for c in rows[0]["classes"]] == [c["class_id"] for c in want["classes"]]
    with pytest.raises(TypeError, match="Did you mean 'top_k'"):
        BatchDetector(model, threads=1, topk=3)
