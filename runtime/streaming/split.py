"""How to split the CPU budget between parallel ORT sessions for streaming.

ONNX Runtime's intra-op threads scale sub-linearly (synchronisation at every operator), so for
throughput, consecutive frames on ``budget`` single-threaded sessions usually beat one frame at a
time on one ``budget``-threaded session; for latency one session with every thread is best.
``choose_split`` is the static rule; ``calibrate_split`` measures the candidates on the model.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from ..session import Session

__all__ = ["choose_split", "calibrate_split", "runs_per_second"]


def choose_split(budget: int, mode: str) -> tuple[int, int]:
    """(workers, threads per worker): ``latest`` -> (1, budget); ``every_frame`` -> one
    single-threaded session per CPU, up to 4 (measured: benchmarks/bench_stream.py)."""
    if mode == "latest" or budget <= 1:
        return 1, max(1, budget)
    workers = min(budget, 4)
    return workers, max(1, budget // workers)


def runs_per_second(sessions: list[Session], feed: dict, seconds: float) -> float:
    """Runs/s of ``sessions`` each looping on ``feed`` in its own thread for ``seconds``."""
    counts = [0] * len(sessions)
    end = time.perf_counter() + seconds

    def loop(k: int) -> None:
        while time.perf_counter() < end:
            sessions[k].run(feed)
            counts[k] += 1

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(len(sessions))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def calibrate_split(model, budget: int, seconds: float = 0.5, rounds: int = 2) -> tuple[int, int]:
    """Measure (1, budget) against (budget, 1) on the model's input, interleaved; the faster wins.
    Costs about ``2 * rounds * seconds`` plus session creation."""
    if budget <= 1:
        return 1, 1
    inp = model.session.inputs[0]
    shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in inp.shape)
    if model.spec.layout == "nchw" and len(shape) == 4 and inp.shape[2] is None:
        shape = (shape[0], shape[1], *model.spec.input_size)
    feed = {inp.name: np.full(shape, 0.5, inp.dtype)}
    base = Session(model.session.path, threads=budget)
    singles = [Session(model.session.path, threads=1) for _ in range(budget)]
    for s in [base, *singles]:
        s.run(feed)
    one = many = 0.0
    for _ in range(rounds):
        one += runs_per_second([base], feed, seconds)
        many += runs_per_second(singles, feed, seconds)
    return (budget, 1) if many > one else (1, budget)
