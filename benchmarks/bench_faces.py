"""YuNet end to end: edgerun FaceDetector vs cv2.FaceDetectorYN (OpenCV's C++ implementation of the
same model file), same frames, interleaved, median of sorted samples.

Run: ``python benchmarks/bench_faces.py [--samples 30] [--fixed]``. Both sides start from the BGR frame.
Default: native resolution (edgerun's default for YuNet): the peer is created at the frame's size
(``setInputSize(w, h)``) and calls ``detect`` on the frame (it pads internally); edgerun pads, runs,
decodes and NMSes itself. ``--fixed``: edgerun at the graph's 640x640, the peer on the frame resized
the same way (cv2.resize keeping aspect). Both run with the same thread budget.
"""
from __future__ import annotations

import argparse
import os
import time

import cv2
import numpy as np

from edgerun.runtime.bench import machine_record, summarize
from edgerun.runtime.tasks.face import FaceDetector
from edgerun.runtime.session import cpu_budget

from _shared import SHARED  # noqa: E402 - $EDGERUN_SHARED or ../shared
MODEL = os.path.join(SHARED, "models", "face_detection_yunet_2023mar.onnx")


def _frames() -> dict[str, np.ndarray]:
    out = {n: cv2.imread(os.path.join(SHARED, "images", n)) for n in ("astronaut.png", "bus.jpg", "zidane.jpg")}
    cap = cv2.VideoCapture(os.path.join(SHARED, "video", "vtest.avi"))
    ok, out["vtest#0"] = cap.read()
    cap.release()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--fixed", action="store_true", help="640x640 instead of native resolution")
    args = ap.parse_args()
    if not os.path.exists(MODEL):
        raise SystemExit(f"skip: {MODEL} not found (../shared absent)")
    cv2.setNumThreads(cpu_budget())
    fd = FaceDetector.from_path(MODEL, native=not args.fixed)
    print(machine_record()["cpu_model"], "threads", cpu_budget(), "native", fd.native,
          "loadavg", open("/proc/loadavg").read().split()[:3])
    for name, img in _frames().items():
        geo = fd.plan(*img.shape[:2])
        yn = cv2.FaceDetectorYN.create(MODEL, "", (geo.new_w, geo.new_h), 0.9, 0.3, 5000)

        def peer(img=img, geo=geo, yn=yn):
            if (geo.new_h, geo.new_w) == img.shape[:2]:
                return yn.detect(img)
            return yn.detect(cv2.resize(img, (geo.new_w, geo.new_h), interpolation=cv2.INTER_LINEAR))

        ours = lambda img=img: fd.detect(img)  # noqa: E731
        for f in (peer, ours):
            f(), f()  # warm-up, excluded
        a, b = [], []
        for i in range(args.samples):
            for f, acc in ((ours, a), (peer, b)) if i % 2 else ((peer, b), (ours, a)):
                t = time.perf_counter()
                f()
                acc.append((time.perf_counter() - t) * 1e3)
        sa, sb = summarize(a), summarize(b)
        print(f"{name:14s} edgerun {sa['median']:7.2f} ms (p90 {sa['p90']:7.2f})   cv2.FaceDetectorYN "
              f"{sb['median']:7.2f} ms (p90 {sb['p90']:7.2f})   ratio {sb['median'] / sa['median']:.2f}x")
    print("loadavg", open("/proc/loadavg").read().split()[:3])


if __name__ == "__main__":
    main()
