"""spin="auto": the other processes' load (runtime/cpuload.py) and the session switching on it."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgerun.runtime import session as session_mod
from edgerun.runtime.cpuload import OtherLoad, auto_spin
from edgerun.runtime.session import Session

DEMO = Path(__file__).resolve().parents[2] / "runtime" / "data" / "demo.onnx"
linux = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux /proc/stat")


@pytest.mark.parametrize("others, threads, cpus, current, mode", [
    (0.0, 2, 2, None, "stop"), (0.4, 2, 2, None, "stop"), (0.6, 2, 2, None, "off"), (1.0, 2, 2, None, "off"),
    (0.4, 2, 2, "off", "off"), (0.2, 2, 2, "off", "stop"), (0.6, 2, 2, "stop", "off"),  # hysteresis
    (1.9, 2, 4, None, "stop"), (2.6, 2, 4, None, "off"),  # two cores left free for others
    (0.0, 1, 2, None, "off"), (0.0, 4, 2, None, "off"),  # no pool; more threads than cores
    (None, 2, 2, None, "off")])  # unknown (no /proc/stat): the safe choice
def test_auto_spin_decisions(others, threads, cpus, current, mode):
    assert auto_spin(others, threads, cpus, current) == mode


@linux
def test_a_busy_process_is_seen_and_our_own_work_is_not():
    load = OtherLoad()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        load.sample()
        time.sleep(0.6)
        seen = load.sample()
    finally:
        busy.kill()
        busy.wait()
    assert seen is not None and seen >= 0.6, seen  # one busy core reads ~1.0
    load.sample()
    time.sleep(0.5)
    idle = load.sample()  # the machine's background, for the next window to be compared with
    t = time.monotonic()
    x = 0
    while time.monotonic() - t < 0.5:  # this process busy: subtracted
        x += 1
    own = load.sample()
    assert idle is not None and own is not None
    assert own - idle < 0.5, (own, idle)  # counted as another's, our busy core would add ~1.0


def test_spin_config_refuses_auto():
    with pytest.raises(ValueError, match="not an ORT setting"):
        session_mod.spin_config("auto")


def _entry(sess: Session) -> str:
    try:
        return sess._sess.get_session_options().get_session_config_entry("session.force_spinning_stop")
    except RuntimeError:  # "off" never sets the key
        return ""


@linux
@pytest.mark.parametrize("start, other", [("off", "stop"), ("stop", "off")])
def test_auto_session_switches_and_keeps_running(monkeypatch, start, other):
    """A changed answer twice in a row rebuilds the ORT session with the other mode; the runs before,
    during and after give the same outputs (fresh IOBinding on the new session)."""
    monkeypatch.setattr(session_mod, "auto_spin", lambda *a, **k: start)
    sess = Session(str(DEMO), threads=2, spin="auto")
    assert sess.spin == "auto" and sess.spin_active == start and sess._auto is not None
    assert _entry(sess) == ("1" if start == "stop" else "")
    x = np.random.default_rng(0).random(sess.inputs[0].shape, dtype=np.float32)
    before = [o.copy() for o in sess.run(x)]
    monkeypatch.setattr(session_mod, "auto_spin", lambda *a, **k: other)
    for _ in range(2):  # two checks that disagree with the running mode
        sess._auto.next_check = 0.0
        sess.run(x)
    deadline = time.monotonic() + 30
    while sess.spin_active != other and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sess.spin_active == other and sess._auto.switches == 1
    assert _entry(sess) == ("1" if other == "stop" else "")
    after = sess.run(x)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert "now 'off'" in repr(sess) or "now 'stop'" in repr(sess)


def test_one_disagreeing_check_does_not_switch(monkeypatch):
    sess = Session(str(DEMO), threads=2, spin="auto")
    if sess._auto is None:
        pytest.skip("no /proc/stat: auto stays at 'off'")
    start = sess.spin_active
    monkeypatch.setattr(session_mod, "auto_spin", lambda *a, **k: "off" if start == "stop" else "stop")
    sess._auto.next_check = 0.0
    sess.run(np.zeros(sess.inputs[0].shape, np.float32))
    time.sleep(0.2)
    assert sess.spin_active == start and sess._auto.switches == 0


def test_fixed_modes_and_one_thread_never_adapt():
    assert Session(str(DEMO), threads=2, spin="off")._auto is None
    one = Session(str(DEMO), threads=1, spin="auto")
    assert one._auto is None and one.spin_active == "off"
