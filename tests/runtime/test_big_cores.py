"""Big cores first: ``cpu_clusters`` / ``cpu_budget`` / ``thread_affinities`` on fake sysfs trees laid
out like real boards (RK3588 4x A76 + 4x A55, Pi 5's 4 equal A76, a 2P+6E laptop read through
cpufreq, a tree without either file), and the no-op on this machine's own uniform CPUs."""
from __future__ import annotations

import os

import numpy as np
import pytest

from edgerun.runtime import session as session_mod
from edgerun.runtime.session import (Session, allowed_cpus, cpu_budget, cpu_clusters, thread_affinities,
                                     use_big_cores)

from conftest import shared_file


def fake_tree(root, capacity=None, max_freq=None):
    """A sysfs CPU folder: ``capacity``/``max_freq`` map CPU number -> value (None: file absent)."""
    cpus = sorted(set(capacity or {}) | set(max_freq or {}))
    for c in cpus:
        d = root / f"cpu{c}" / "cpufreq"
        d.mkdir(parents=True)
        if capacity and capacity.get(c) is not None:
            (root / f"cpu{c}" / "cpu_capacity").write_text(f"{capacity[c]}\n")
        if max_freq and max_freq.get(c) is not None:
            (d / "cpuinfo_max_freq").write_text(f"{max_freq[c]}\n")
    return str(root)


@pytest.fixture(autouse=True)
def _no_env_threads(monkeypatch):
    monkeypatch.delenv("EDGERUN_THREADS", raising=False)


RK3588 = {0: 414, 1: 414, 2: 414, 3: 414, 4: 1024, 5: 1024, 6: 1024, 7: 1024}


def test_rk3588_big_cluster_first(tmp_path):
    root = fake_tree(tmp_path, capacity=RK3588)
    cl = cpu_clusters(root, cpus=range(8))
    assert cl.source == "cpu_capacity" and cl.heterogeneous
    assert cl.clusters == ((1024, (4, 5, 6, 7)), (414, (0, 1, 2, 3)))
    assert cl.big == (4, 5, 6, 7)
    assert cpu_budget(root, cpus=range(8)) == 4
    # ORT: 3 pool threads (the caller's thread is the 4th), each on the A76s as 1-based ids.
    assert thread_affinities(4, cl) == "5,6,7,8;5,6,7,8;5,6,7,8"
    assert thread_affinities(1, cl) is None
    assert "4 threads pinned to CPUs 4,5,6,7" in cl.describe() and "4x 414 [0,1,2,3]" in cl.describe()


def test_rk3588_restricted_to_allowed_cpus(tmp_path):
    root = fake_tree(tmp_path, capacity=RK3588)
    # A process confined (taskset) to two A55s and one A76: the fastest *allowed* cluster wins.
    cl = cpu_clusters(root, cpus=[0, 1, 6])
    assert cl.cpus == (0, 1, 6) and cl.big == (6,)
    assert cpu_budget(root, cpus=[0, 1, 6]) == 1
    # Confined to the A55s only: uniform, all of them.
    cl = cpu_clusters(root, cpus=[0, 1, 2])
    assert not cl.heterogeneous and cl.big == (0, 1, 2) and thread_affinities(3, cl) is None


def test_pi5_uniform(tmp_path):
    root = fake_tree(tmp_path, capacity={c: 1024 for c in range(4)}, max_freq={c: 2400000 for c in range(4)})
    cl = cpu_clusters(root, cpus=range(4))
    assert not cl.heterogeneous and cl.big == (0, 1, 2, 3) and cl.source == "cpu_capacity"
    assert cpu_budget(root, cpus=range(4)) == 4
    assert thread_affinities(4, cl) is None
    assert cl.describe() == "4 CPUs, uniform (cpu_capacity): 4 threads"


def test_laptop_2p_6e_by_max_freq(tmp_path):
    # No cpu_capacity (x86), P-cores at 4.7/4.6 GHz (one favoured core: same cluster), E-cores 3.3 GHz.
    freq = {0: 4700000, 1: 4600000, **{c: 3300000 for c in range(2, 8)}}
    root = fake_tree(tmp_path, max_freq=freq)
    cl = cpu_clusters(root, cpus=range(8))
    assert cl.source == "cpuinfo_max_freq"
    assert cl.clusters == ((4700000, (0, 1)), (3300000, (2, 3, 4, 5, 6, 7)))
    assert cpu_budget(root, cpus=range(8)) == 2
    assert thread_affinities(2, cl) == "1,2"


def test_missing_or_partial_files_are_uniform(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    cl = cpu_clusters(str(empty), cpus=range(6))
    assert not cl.heterogeneous and cl.big == tuple(range(6)) and cl.source == ""
    assert cpu_budget(str(empty), cpus=range(6)) == 6
    # One CPU's capacity unreadable (and garbage in another's max_freq): neither source is complete.
    part = fake_tree(tmp_path / "part", capacity={0: 1024, 1: None, 2: 414},
                     max_freq={0: 2400000, 1: 2400000, 2: None})
    assert not cpu_clusters(part, cpus=range(3)).heterogeneous
    (tmp_path / "part" / "cpu2" / "cpufreq" / "cpuinfo_max_freq").write_text("n/a\n")
    assert not cpu_clusters(part, cpus=range(3)).heterogeneous


def test_env_threads_wins(tmp_path, monkeypatch):
    root = fake_tree(tmp_path, capacity=RK3588)
    monkeypatch.setenv("EDGERUN_THREADS", "8")
    assert cpu_budget(root, cpus=range(8)) == 8
    assert use_big_cores(root) is None  # the user's count: nothing pinned


def test_this_machine_is_a_no_op():
    """This machine's CPUs are uniform (or report nothing): all allowed CPUs, no pinning, no entry."""
    cl = cpu_clusters()
    if cl.heterogeneous:
        pytest.skip(f"this machine's CPUs are heterogeneous: {cl.describe()}")
    before = os.sched_getaffinity(0)
    assert cpu_budget() == len(allowed_cpus()) == len(before)
    assert use_big_cores() is None and os.sched_getaffinity(0) == before
    sess = Session(str(shared_file("models", "yolov8n_320_int8dyn.onnx")), spin="off")
    assert sess.threads == len(before) and sess.affinities is None


def test_session_pins_ort_pool_on_mixed_cores(tmp_path, monkeypatch):
    """A Session opened on a (fake) mixed set gets the big cluster's size and ORT accepts the pinning
    entry; its outputs equal an unpinned session's. The allowed set is faked to include one slow CPU
    beyond this machine's real ones (never pinned to: it is not in the big cluster)."""
    real = allowed_cpus()
    slow = max(real) + 1
    root = fake_tree(tmp_path, capacity={**{c: 1024 for c in real}, slow: 400})
    monkeypatch.setattr(session_mod, "SYSFS_CPU", root)
    monkeypatch.setattr(session_mod, "allowed_cpus", lambda: (*real, slow))
    model = str(shared_file("models", "yolov8n_320_int8dyn.onnx"))
    pinned = Session(model, spin="off")
    assert pinned.threads == len(real)
    want = None if len(real) == 1 else ";".join([",".join(str(c + 1) for c in real)] * (len(real) - 1))
    assert pinned.affinities == want
    chosen = Session(model, spin="off", threads=len(real))  # threads= chosen: no pinning
    assert chosen.affinities is None
    x = np.random.default_rng(0).random(pinned.inputs[0].shape, dtype=np.float32)
    a = [o.copy() for o in pinned.run(x)]
    b = chosen.run(x)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-4)


def test_use_big_cores_pins_the_calling_thread(tmp_path, monkeypatch):
    """A (fake) mixed set over this machine's real CPUs: the first is "big", the others slow. The
    calling thread is pinned to the first CPU and a thread started afterwards inherits it."""
    import threading

    real = allowed_cpus()
    if len(real) < 2:
        pytest.skip("needs two CPUs to pin to one of them")
    root = fake_tree(tmp_path, capacity={c: (1024 if c == real[0] else 400) for c in real})
    monkeypatch.setattr(session_mod, "SYSFS_CPU", root)
    before = os.sched_getaffinity(0)
    seen = []
    try:
        assert use_big_cores() == (real[0],)
        t = threading.Thread(target=lambda: seen.append(os.sched_getaffinity(0)))
        t.start()
        t.join()
        assert os.sched_getaffinity(0) == {real[0]} and seen == [{real[0]}]
    finally:
        os.sched_setaffinity(0, before)
    monkeypatch.setenv("EDGERUN_THREADS", "2")
    assert use_big_cores() is None and os.sched_getaffinity(0) == before
