"""Progress on long work, the field's way: a tqdm bar on a terminal, plain periodic lines when piped.

Never a carriage return into a log file: when the stream is not a TTY, `Progress` prints one full line
every `interval` seconds (and none at all for work shorter than that). Every command (predict, stream,
benchmark, batch, export) reports through this one class.
"""
from __future__ import annotations

import sys
import time
from typing import IO, Any

__all__ = ["Progress"]


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """Counts units of work and shows them on `stream` (stderr by default).

    `enabled=False` shows nothing; `enabled=None` (default) shows a bar on a TTY and plain lines
    every `interval` seconds otherwise. `update(n, **postfix)` adds `n` units; `postfix` values
    (e.g. `errors=2`) are shown beside the count.
    """

    def __init__(self, desc: str, total: int | None = None, unit: str = "it", *,
                 stream: IO[str] | None = None, enabled: bool | None = True, interval: float = 10.0):
        self.desc, self.total, self.unit, self.interval = desc, total, unit, float(interval)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled is not False
        self.n = 0
        self._postfix: dict[str, Any] = {}
        self._t0 = self._last = time.monotonic()
        self._bar = None
        if self.enabled and _isatty(self.stream):
            from tqdm import tqdm
            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True,
                             leave=False, mininterval=0.2)

    def update(self, n: int = 1, **postfix: Any) -> None:
        """Add `n` finished units; keyword values are shown as `key=value` beside the count."""
        self.n += n
        if postfix:
            self._postfix.update(postfix)
        if not self.enabled:
            return
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(self._postfix, refresh=False)
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def line(self) -> str:
        """The plain progress line: `desc: n/total unit (rate unit/s, key=value ...)`."""
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        extra = "".join(f", {k}={v}" for k, v in self._postfix.items())
        return f"{self.desc}: {count} {self.unit} ({self.n / elapsed:.1f} {self.unit}/s{extra})"

    def close(self) -> None:
        """Remove the bar (the caller prints its own summary line)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
