"""How many of this process's cores other processes keep busy, for ``spin="auto"`` (``session.py``).

Linux only: ``/proc/stat`` busy ticks (user, nice, system, irq, softirq, steal) of the CPUs in this
process's affinity set, minus this process's own CPU time (``getrusage``), over the wall time between
two samples. Hypervisor steal counts as busy: a vCPU taken away is a core our threads cannot spin on.
Elsewhere (no ``/proc/stat``) ``sample`` returns None and the caller picks the safe choice.
"""
from __future__ import annotations

import os
import time

__all__ = ["OtherLoad", "auto_spin"]

try:
    _TICK = float(os.sysconf("SC_CLK_TCK"))
except (AttributeError, ValueError, OSError):
    _TICK = 100.0


def _cpus() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None


def _own_cpu_seconds() -> float:
    try:
        import resource
    except ImportError:  # Windows
        t = os.times()
        return t.user + t.system
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class OtherLoad:
    """Cores other processes used on this process's CPUs, averaged between successive ``sample()``s."""

    def __init__(self) -> None:
        cpus = _cpus()
        self.cpus = len(cpus) if cpus else (os.cpu_count() or 1)
        self._names = {f"cpu{c}" for c in cpus} if cpus else None
        self._last = self._read()

    def _read(self) -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat", "rb") as f:
                text = f.read().decode("ascii", "replace")
        except OSError:
            return None
        busy = 0
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 9 or not parts[0].startswith("cpu") or parts[0] == "cpu":
                continue
            if self._names is not None and parts[0] not in self._names:
                continue
            try:
                user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in parts[1:9])
            except ValueError:
                return None
            busy += user + nice + system + irq + softirq + steal
        return time.monotonic(), busy / _TICK, _own_cpu_seconds()

    def seconds_since_sample(self) -> float:
        """Wall time of the current window (inf when nothing could be read)."""
        return time.monotonic() - self._last[0] if self._last else float("inf")

    def sample(self) -> float | None:
        """Average number of cores other processes kept busy since the previous sample (or since
        construction); starts the next window. None when ``/proc/stat`` is unreadable."""
        now = self._read()
        last, self._last = self._last, now
        if now is None or last is None or now[0] <= last[0]:
            return None
        others = (now[1] - last[1]) - (now[2] - last[2])
        return max(0.0, others / (now[0] - last[0]))


def auto_spin(others: float | None, threads: int, cpus: int, current: str | None = None) -> str:
    """The ORT spin mode ``spin="auto"`` picks: ``"stop"`` (spin inside ``run`` only) while other
    processes leave the session's cores idle, ``"off"`` when they compete for them or when that is
    unknown. ``threads`` <= 1 has no intra-op pool, so nothing spins: ``"off"``.

    Idle means other processes use at most the cores the session leaves free (``cpus - threads``)
    plus a margin: 0.5 core to leave ``"stop"``, 0.25 to come back to it (hysteresis). One busy
    process reads about 1.0, a quiet board 0.0-0.1."""
    if threads <= 1 or others is None:
        return "off"
    spare = cpus - threads
    margin = 0.25 if current == "off" else 0.5
    return "stop" if others <= spare + margin else "off"
