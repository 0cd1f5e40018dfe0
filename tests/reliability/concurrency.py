"""Threads sharing one Detector vs one Detector per thread, against a serial run.

``python concurrency.py MODEL CALLS THREADS`` prints one JSON summary line; it runs in a child
(tests/reliability/test_concurrency.py, tests/reliability/long_runs.py) so an abort in a threading
layer is a failed run, and a deadlock is caught by the caller's timeout (and the join deadline).
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, also when run as a child script
from helpers import shared_dir  # noqa: E402

SHARED = shared_dir()
PHOTOS = ("bus.jpg", "zidane.jpg", "astronaut.png", "coffee.png", "chelsea.png", "squirrel_cls.jpg")


def base_photos() -> list[np.ndarray]:
    """The six photos of ../shared, or generated scenes when it is absent (a fresh clone)."""
    import cv2

    photos = [cv2.imread(str(SHARED / "images" / p)) for p in PHOTOS]
    if any(p is None for p in photos):
        from edgerun.runtime.demo import make_scene
        photos = [make_scene(seed, size=(360, 480))[0] for seed in range(len(PHOTOS))]
    return photos


def make_image(photos: list[np.ndarray], i: int) -> tuple[np.ndarray, str]:
    """Call ``i``'s image, a pure function of ``i``: a random crop of a photo resized to a random
    small size (a different letterbox geometry per call), every fifth one gray. Every call of a
    2,000-call run sees a different image, and the serial run regenerates the same ones."""
    import cv2

    rng = np.random.default_rng(i)
    img = photos[i % len(photos)]
    H, W = img.shape[:2]
    ch, cw = int(rng.integers(H // 2, H + 1)), int(rng.integers(W // 2, W + 1))
    y, x = int(rng.integers(0, H - ch + 1)), int(rng.integers(0, W - cw + 1))
    h, w = int(rng.integers(60, 260)), int(rng.integers(60, 260))
    small = cv2.resize(img[y:y + ch, x:x + cw], (w, h), interpolation=cv2.INTER_AREA)
    return (cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), "gray") if i % 5 == 4 else (small, "bgr")


def _key(det) -> tuple[bytes, bytes, bytes]:
    return det.xyxy.tobytes(), det.confidence.tobytes(), det.class_id.tobytes()


def _threaded(detectors: list, photos: list, calls: int, deadline: float) -> tuple[list, list[str]]:
    results: list = [None] * calls
    errors: list[str] = []
    n = len(detectors)

    def work(t: int) -> None:
        try:
            for i in range(t, calls, n):
                img, fmt = make_image(photos, i)
                results[i] = _key(detectors[t].detect(img, fmt))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            errors.append(f"thread {t}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(max(0.0, deadline - time.monotonic()))
    hung = sum(th.is_alive() for th in threads)
    if hung:
        errors.append(f"{hung} thread(s) still running at the deadline: deadlock or livelock")
    return results, errors


def run(model: str, calls: int, n_threads: int = 8, timeout: float = 600, threads_first: bool = False) -> dict:
    """``threads_first``: the threaded runs go before the serial one, so with a cold kernel cache
    the first calls (and Numba's compilation) happen in 8 threads at once."""
    from edgerun.runtime import Detector

    photos = base_photos()
    shared = Detector.from_path(model)
    modes = {"shared": [shared] * n_threads, "per_thread": [Detector.from_path(model) for _ in range(n_threads)]}
    report: dict = {"calls": calls, "threads": n_threads, "threads_first": threads_first}
    threaded = {}
    if threads_first:
        threaded = {m: _timed(_threaded, dets, photos, calls, time.monotonic() + timeout) for m, dets in modes.items()}
    (serial, _), t_serial = _timed(lambda: ([_key(shared.detect(*make_image(photos, i))) for i in range(calls)],
                                            None))
    report["serial_s"] = t_serial
    for mode, dets in modes.items():
        (res, errors), seconds = threaded.get(mode) or _timed(_threaded, dets, photos, calls,
                                                              time.monotonic() + timeout)
        report[mode] = {"seconds": seconds, "errors": errors, "missing": sum(r is None for r in res),
                        "mismatches": sum(r != s for r, s in zip(res, serial))}
    report["boxes"] = sum(len(k[1]) // 4 for k in serial)
    return report


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, round(time.perf_counter() - t0, 2)


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                         threads_first="--threads-first" in sys.argv[4:])), flush=True)
