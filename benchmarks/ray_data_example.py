"""Runnable example: edgerun's detector inside a Ray Data pipeline (``pip install "edgerun[ray]"``).

    python benchmarks/ray_data_example.py MODEL.onnx IMAGE_DIR OUT_DIR [--workers 2] [--address auto]

Reads encoded images with ``read_binary_files``, detects with a pool of ``BatchDetector`` actors
(one ONNX Runtime session per actor, intra-op threads = the actor's CPUs), writes Parquet. The
actors reserve ``actor_cpus(threads)`` CPUs (threads - 0.5), so with as many actors as cores the
read and write tasks still find a CPU slot and the job cannot deadlock.
"""
from __future__ import annotations

import argparse
import os

import numpy as np


def detect_files(model: str, image_dir: str, out_dir: str, workers: int, threads: int = 1):
    """Encoded files -> result rows (source, frame, width, height, detections, speed_ms, error,
    worker), written as Parquet under ``out_dir``."""
    import ray

    from edgerun.runtime.batch import BatchDetector, actor_cpus

    ds = ray.data.read_binary_files(image_dir, include_paths=True)  # columns: bytes, path
    results = ds.map_batches(
        BatchDetector,
        fn_constructor_kwargs={"model": os.path.abspath(model), "score_threshold": 0.25,
                               "threads": threads},
        compute=ray.data.ActorPoolStrategy(size=workers),  # older Ray: concurrency=workers
        num_cpus=actor_cpus(threads),
        batch_size=16,
    )
    results.write_parquet(out_dir)
    return results


def detect_frames(model: str, frames: list[np.ndarray], workers: int = 1) -> list[dict]:
    """Decoded BGR frames (an ``image`` column) -> one result row per frame."""
    import ray

    from edgerun.runtime.batch import BatchDetector, actor_cpus

    ds = ray.data.from_items([{"image": f, "source": "camera0", "frame": i}
                              for i, f in enumerate(frames)])
    out = ds.map_batches(BatchDetector, fn_constructor_kwargs={"model": os.path.abspath(model)},
                         compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=actor_cpus(1),
                         batch_size=8)
    return out.take_all()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("image_dir")
    p.add_argument("out_dir")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--address", help="an existing cluster (default: a local Ray instance)")
    args = p.parse_args()
    import ray

    ray.init(address=args.address, include_dashboard=False, logging_level="ERROR")
    try:
        detect_files(args.model, args.image_dir, args.out_dir, args.workers)
        import pyarrow.parquet as pq
        table = pq.read_table(args.out_dir)
        n_obj = sum(len(d) for d in table.column("detections").to_pylist())
        print(f"{table.num_rows} images, {n_obj} objects -> {args.out_dir}")
        from edgerun.runtime.sources import read_image
        first = read_image(table.column("source")[0].as_py())
        rows = detect_frames(args.model, [first, first[:, ::-1]])  # a frame and its mirror image
        print("decoded frames:", [(r["frame"], len(r["detections"])) for r in rows])
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
