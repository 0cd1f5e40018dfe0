"""Without the ``mqtt`` / ``frigate`` extra, ``--mqtt`` and ``--frigate-zmq`` stop with one line
naming the install (paho / zmq made unimportable in a child process)."""
from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import shared_file

HIDE = "import sys; sys.modules[{mod!r}] = None; from edgerun.runtime.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize("mod,args,extra", [
    ("paho", ["stream", "{m}", "{v}", "--mqtt", "mqtt://127.0.0.1:1/cam"], "mqtt"),
    ("zmq", ["serve", "{m}", "--frigate-zmq", "tcp://127.0.0.1:1"], "frigate"),
])
def test_missing_extra_is_one_line_naming_the_install(mod, args, extra):
    m, v = shared_file("models", "yolov8n_320_int8dyn.onnx"), shared_file("video", "vtest.avi")
    argv = [a.format(m=m, v=v) for a in args]
    r = subprocess.run([sys.executable, "-c", HIDE.format(mod=mod), *argv], capture_output=True, text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("edgerun: error: ") and f"pip install 'edgerun[{extra}]'" in lines[0], lines
