"""Pre-processing benchmark: edgerun ``letterbox`` vs the OpenCV chain, camera frame -> model tensor.

Run: ``python benchmarks/bench_preprocess.py [--samples 41] [--cv2-threads 1] [--parallel] [--json f]``.
Peer chain (what Ultralytics-style code does): [cv2.cvtColor(YUV->BGR)] + cv2.resize(INTER_LINEAR) +
cv2.copyMakeBorder + cv2.cvtColor(BGR2RGB) + transpose + astype(float32) / 255, into a fresh array.
edgerun writes into a reused ``out`` buffer. The kernels are serial, so OpenCV gets the same thread count
(1) by default. Every case interleaves the two call by call (order alternating), excludes and reports
warm-up, and gives median / p90 of sorted samples (edgerun.runtime.bench.summarize) and the ratio
peer / edgerun. ``--parallel`` adds a prange twin of the kernel to show whether parallel=True pays.

The peer's fresh arrays make its time depend on the C heap (``Heap``): on glibc the chain is timed in both
states, set explicitly, "warm" (its fastest: freed arrays stay mapped) and "fresh pages" (malloc_trim before
each call, so every new array page-faults in, as happens whenever glibc returns the freed memory itself).
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
from typing import Callable

import cv2
import numpy as np
import numba
from numba import prange

from edgerun.kernels import letterbox, plan
from edgerun.kernels import camera as C
from edgerun.kernels import preprocess as P
from edgerun.kernels._jit import jit
from edgerun.runtime.bench import interleaved, machine_record

CASES = [  # (name, src_h, src_w, size)
    ("1080p->640", 1080, 1920, 640), ("720p->640", 720, 1280, 640), ("bus 1080x810->640", 1080, 810, 640),
    ("VGA->640", 480, 640, 640), ("VGA->320", 480, 640, 320), ("QVGA->640 (upscale)", 240, 320, 640),
]
CODES = {"bgr": None, "nv12": cv2.COLOR_YUV2BGR_NV12, "i420": cv2.COLOR_YUV2BGR_I420,
         "yuyv": cv2.COLOR_YUV2BGR_YUY2}
_PLANAR = ("nv12", "i420")  # (H*3//2, W) buffers


class Heap:
    """The C heap state the OpenCV chain's fresh 5-6 MB arrays land in (glibc only; ``libc`` None elsewhere).

    Left alone, glibc decides by the process's history whether the chain's freed arrays go back to the OS
    (its heap top passed M_TRIM_THRESHOLD, or the block came from mmap): then each call page-faults them in
    again (1600-2800 minor faults, +3-5 ms per 1080p call here) and the same chain measured 1.6 or 6.4 ms
    in two runs. ``pin`` fixes the warm state (thresholds high: nothing is returned, no faults); ``fresh``
    wraps a call with malloc_trim(0), the faulting state, reproducibly."""

    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)

    def __init__(self) -> None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"))
            self.libc = libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
        except OSError:
            self.libc = None

    def pin(self) -> bool:
        """Keep freed memory in the process (the warm state); False when not on glibc."""
        if self.libc is None:
            return False
        return bool(self.libc.mallopt(self.M_MMAP_THRESHOLD, 64 << 20)) and \
            bool(self.libc.mallopt(self.M_TRIM_THRESHOLD, 256 << 20))

    def fresh(self, fn: Callable[[], object]) -> Callable[[], object]:
        """``fn`` after returning every free heap page to the OS (its arrays fault in anew)."""
        trim = self.libc.malloc_trim

        def run() -> object:
            trim(0)
            return fn()
        return run


def camera_frame(h: int, w: int, fmt: str, seed: int = 0) -> np.ndarray:
    """A smooth synthetic frame in ``fmt`` (OpenCV buffer shapes)."""
    bgr = cv2.GaussianBlur(np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8), (9, 9), 0)
    if fmt == "bgr":
        return bgr
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    if fmt == "i420":
        return i420.reshape(h * 3 // 2, w)
    y, u, v = i420[:h * w], i420[h * w:h * w * 5 // 4], i420[h * w * 5 // 4:]
    if fmt == "nv12":
        uv = np.empty(h * w // 2, np.uint8)
        uv[0::2], uv[1::2] = u, v
        return np.concatenate([y, uv]).reshape(h * 3 // 2, w)
    u2 = u.reshape(h // 2, w // 2)[np.arange(h) // 2]  # 4:2:0 -> 4:2:2 by repeating chroma rows
    v2 = v.reshape(h // 2, w // 2)[np.arange(h) // 2]
    yuyv = np.empty((h, w, 2), np.uint8)
    yuyv[:, :, 0] = y.reshape(h, w)
    yuyv[:, 0::2, 1], yuyv[:, 1::2, 1] = u2, v2
    return yuyv


def opencv_chain(frame: np.ndarray, fmt: str, size: int) -> Callable[[], np.ndarray]:
    h, w = (frame.shape[0] * 2 // 3, frame.shape[1]) if fmt in _PLANAR else frame.shape[:2]
    g = plan(h, w, size)

    def run() -> np.ndarray:
        bgr = frame if fmt == "bgr" else cv2.cvtColor(frame, CODES[fmt])
        r = cv2.resize(bgr, (g.new_w, g.new_h), interpolation=cv2.INTER_LINEAR) if (g.new_h, g.new_w) != (h, w) \
            else bgr
        r = cv2.copyMakeBorder(r, g.top, g.dst_h - g.new_h - g.top, g.left, g.dst_w - g.new_w - g.left,
                               cv2.BORDER_CONSTANT, value=(114, 114, 114))
        return cv2.cvtColor(r, cv2.COLOR_BGR2RGB).transpose(2, 0, 1).astype(np.float32) / 255
    return run


@jit(parallel=True)
def _bgr_parallel(img, tx, src, xo, w, coff, xmode, o, lut, padv, ty, box, bands):
    """prange twin of camera.bgr_kernel: ``bands`` independent row bands, each with its own ring."""
    step = (o.shape[1] + bands - 1) // bands
    for b in prange(bands):
        y0, y1 = b * step, min(o.shape[1], (b + 1) * step)
        C._bgr_rows(img, tx, src, xo, w, coff, xmode, o, lut, padv, ty, box, y0, y1)


def parallel_twin(frame: np.ndarray, size: int, out: np.ndarray) -> Callable[[], None]:
    """letterbox(frame, size, out=out) for BGR, default options, through the parallel twin."""
    g = plan(*frame.shape[:2], size)
    lut, padv = P._tables(1 / 255, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 114.0, False)
    box = P._box(g)
    ty, _ = P._taps(g.src_h, g.new_h, int(box[0]) - g.top, int(box[1] - box[0]), False)
    rows, sx, flip, coff = P._flat(frame)
    x0, nx = int(box[2]) - g.left, int(box[3] - box[2])
    xo, w, xmode, _ = P._htaps(g.src_w, g.new_w, x0, nx, sx, flip)
    tx, _ = P._taps(g.src_w, g.new_w, x0, nx, True)
    bands = 4 * max(1, numba.get_num_threads())
    return lambda: _bgr_parallel(frame, tx, rows, xo, w, coff, xmode, out[::-1], lut, padv, ty, box, bands)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=41, help="timed calls per function (>= 20)")
    ap.add_argument("--cv2-threads", type=int, default=1, help="OpenCV threads (edgerun's kernels are serial)")
    ap.add_argument("--parallel", action="store_true", help="also time a parallel=True twin (BGR)")
    ap.add_argument("--json", help="write all statistics and the machine record here")
    args = ap.parse_args()
    cv2.setNumThreads(args.cv2_threads)
    heap = Heap()
    pinned = heap.pin()
    record = {"machine": machine_record(), "cv2_threads": cv2.getNumThreads(),
              "heap": "glibc, pinned warm; fresh pages by malloc_trim" if pinned else "not glibc: as found",
              "cases": []}
    print(f"cv2 threads {cv2.getNumThreads()}, edgerun serial; median ms of {args.samples} sorted samples")
    for w in record["machine"]["warnings"]:
        print("warning:", w)
    if not pinned:
        print("warning: not glibc: the OpenCV chain runs in whatever heap state it finds (no fresh-pages column)")
    print(f"{'case':24s} {'fmt':5s} {'edgerun':>8s} {'p90':>7s} {'opencv':>8s} {'p90':>7s} {'ratio':>6s}"
          + (f" {'fresh pages':>11s} {'p90':>7s} {'ratio':>6s}" if pinned else ""))
    for name, h, w, size in CASES:
        for fmt in CODES:
            frame = camera_frame(h, w, fmt)
            out = np.empty((3, size, size), np.float32)
            chain = opencv_chain(frame, fmt, size)
            fns = {"edgerun": lambda f=frame, fm=fmt, o=out: letterbox(f, size, pixel_format=fm, out=o),
                   "opencv": chain}
            if args.parallel and fmt == "bgr":
                fns["edgerun_parallel"] = parallel_twin(frame, size, np.empty_like(out))
            res = interleaved(fns, args.samples)
            e, c = res["edgerun"], res["opencv"]
            line = (f"{name:24s} {fmt:5s} {e['median']:8.3f} {e['p90']:7.3f} {c['median']:8.3f} {c['p90']:7.3f} "
                    f"{c['median'] / e['median']:5.2f}x")
            if pinned:  # a pass of its own: the trim would also take the warm chain's pages
                fr = interleaved({"edgerun": fns["edgerun"], "opencv": heap.fresh(chain)}, args.samples)
                res["fresh_pages"] = fr
                f = fr["opencv"]
                line += f" {f['median']:11.3f} {f['p90']:7.3f} {f['median'] / e['median']:5.2f}x"
            if "edgerun_parallel" in res:
                p = res["edgerun_parallel"]["median"]
                line += f"   parallel {p:.3f} ms (serial/parallel {e['median'] / p:.2f}x)"
            print(line, flush=True)
            record["cases"].append({"case": name, "format": fmt, **res})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
