"""benchmarks/bench_preprocess.py's heap states for the OpenCV chain: pinned warm, a fresh array costs no
page faults; wrapped in ``Heap.fresh``, each call faults its pages in again (what glibc's trimming does to
the chain by itself, depending on the process's history). In a subprocess: pinning is process-wide."""
from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

PROBE = """
import resource, sys
import numpy as np
sys.path.insert(0, {bench!r})
from bench_preprocess import Heap

def chain():  # what the chain does with its tensor: a fresh 6 MB array, written
    a = np.empty(6 << 20, np.uint8)
    a.fill(1)
    return a

def faults(fn, n=20):
    fn()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / n

heap = Heap()
assert heap.pin(), "mallopt refused"
print(faults(chain), faults(heap.fresh(chain)))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="Heap controls glibc's allocator only")
def test_heap_states_of_the_opencv_chain():
    out = subprocess.run([sys.executable, "-c", PROBE.format(bench=str(ROOT / "benchmarks"))],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    warm, fresh = map(float, out.stdout.split())
    pages = (6 << 20) // 4096  # 1536 pages of 4 KiB (fewer faults with fault-around or huge pages)
    assert warm < 16, f"pinned warm heap: {warm} page faults per call, expected ~0"
    assert fresh > pages / 8, f"fresh pages: {fresh} faults per call, expected ~{pages}"
