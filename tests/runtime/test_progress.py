"""Progress: plain full lines when piped (never a carriage return), a tqdm bar on a TTY, nothing when off."""
import io
import time

from edgerun.runtime.progress import Progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_piped_progress_prints_whole_lines_at_the_interval():
    out = io.StringIO()
    with Progress("frames", total=5, unit="frame", stream=out, interval=0.0) as p:
        for _ in range(5):
            p.update(1, errors=0)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 5 and lines[-1].startswith("frames: 5/5 frame (") and "errors=0" in lines[-1]


def test_piped_progress_is_silent_for_short_work():
    out = io.StringIO()
    with Progress("frames", stream=out, interval=60.0) as p:
        p.update(3)
    assert out.getvalue() == "" and p.n == 3


def test_disabled_progress_prints_nothing_even_on_a_tty():
    out = _Tty()
    with Progress("frames", stream=out, enabled=False, interval=0.0) as p:
        p.update(2)
    assert out.getvalue() == ""


def test_tty_progress_draws_a_tqdm_bar():
    out = _Tty()
    with Progress("frames", total=4, unit="frame", stream=out) as p:
        p.update(3)
        time.sleep(0.25)  # past the bar's 0.2 s redraw interval: tqdm 4.66.0 redraws only then (and
        p.update(1)       # clears without a last redraw on close; newer tqdm redraws at close too)
    assert "frames" in out.getvalue() and "4/4" in out.getvalue()
