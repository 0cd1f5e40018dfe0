"""Bad invocations of every command, as a user types them: each must end with exactly one stderr
line, ``edgerun: error: ...``, naming the problem (checked by a fragment), no traceback, and the
documented exit status (2), before any long work.

The table runs in one child process (this file run as a script calls ``edgerun.runtime.cli.main``
once per row with fd 1/2 redirected, so C-level output counts too); the cases that need a real
process of their own (a closed stdout) run as ``python -m edgerun.runtime.cli``.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

try:
    import ray  # noqa: F401 - the batch command's extra
    _HAVE_RAY = True
except ImportError:
    _HAVE_RAY = False

# (command line, expected exit status, fragment of the error line). Placeholders: {m} a tiny
# 64x64 detector, {img} an image, {video} a video, {dir} a folder of both, {empty} an empty
# folder, {file} an existing plain file, {busy} a port something already listens on, {tmp} a folder.
CASES = [
    # predict
    ("predict {img}", 2, "no model given"),
    ("predict {m} {img} confidence=0.4", 2, "did you mean conf="),
    ("predict {m} {img} classes=0", 2, "no 'classes' option"),
    ("predict {m} {img} half=True", 2, "edgerun export"),
    ("predict {m} {img} --conf 0.5 conf=0.3", 2, "given twice"),
    ("predict {m} {img} device=0", 2, "CPU only"),
    ("predict {m} {img} agnostic_nms=maybe", 2, "agnostic_nms=True or agnostic_nms=False"),
    ("predict {m} {tmp}/missing.jpg", 2, "source not found"),
    ("predict {m} {empty}", 2, "no images or videos found"),
    ("predict {tmp}/missing.onnx {img}", 2, "model file not found"),
    ("predict {m} {m} {img}", 2, "more than one model"),
    ("predict yolov8n.pt {img}", 2, "edgerun export yolov8n.pt"),
    ("predict --demo {m} {img}", 2, "conflicts"),
    ("predict {m} {img} --imgsz 320", 2, "is fixed to 64x64 (HxW) and cannot run at 320x320"),
    ("predict {m} {img} --save {file}", 2, "is a file"),
    ("predict {m} {img} --conf abc", 2, "invalid float value"),
    ("predict {m} {img} --confidence 0.4", 2, "did you mean --conf"),
    ("predict {m} {img} --task nope", 2, "invalid choice"),
    # stream
    ("stream {m}", 2, "required: source"),
    ("stream {tmp}/missing.onnx {video}", 2, "model file not found"),
    ("stream {m} {tmp}/missing.avi", 2, "source not found"),
    ("stream {m} {video} --view {busy}", 2, "cannot listen"),
    ("stream {m} {video} --view 70000", 2, "port 0-65535"),
    ("stream {m} {video} --save {tmp}/no-such-dir/out.mp4", 2, "does not exist"),
    ("stream {m} {video} --max-frames 0", 2, "--max-frames 0"),
    ("stream {m} {video} --mode fast", 2, "invalid choice"),
    ("stream {m} {video} confidence=0.3", 2, "did you mean conf="),
    ("stream {m} {video} --conf 0.2 --conf 0.3", 2, "given twice"),
    ("stream {m} {video} --mqtt http://127.0.0.1/cam", 2, "expected mqtt://HOST"),  # before paho is needed
    # benchmark
    ("benchmark {m} {img} --csv {tmp}/no-such-dir/x.csv", 2, "does not exist"),
    ("benchmark {m} {img} --json {tmp}", 2, "is a directory"),
    ("benchmark {tmp}/missing.onnx", 2, "model file not found"),
    ("benchmark {m} {img} --iterations 0", 2, "--iterations"),
    ("benchmark {m} {img} --threads a,b", 2, "--threads"),
    ("benchmark {m} {img} iterations=5 iterations=6", 2, "given twice"),
    # info
    ("info", 2, "required: model"),
    ("info {tmp}/missing.onnx", 2, "model file not found"),
    ("info {file}", 2, "existing_file"),
    ("info {m} --jsn", 2, "did you mean --json"),
    # warmup
    ("warmup now", 2, "unrecognized arguments"),
    # export
    ("export {m}", 2, "-o/--output"),
    ("export {tmp}/missing.onnx -o {tmp}/x.onnx", 2, "not found"),
    ("export {m} -o {tmp}/no-such-dir/x.onnx", 2, "does not exist"),
    ("export {m} -o {tmp}/x.onnx --half --int8", 2, "not allowed with"),
    ("export {m} -o {tmp}/x.onnx --int8", 2, "--calib"),
    # batch (all refused before Ray starts)
    ("batch {m}", 2, "required"),
    ("batch {tmp}/missing.onnx {dir} -o {tmp}/out.jsonl", 2, "model file not found"),
    ("batch {m} {dir} -o {tmp}/out.csv", 2, ".jsonl or .parquet"),
    ("batch {m} {tmp}/missing-dir -o {tmp}/out.jsonl", 2, "missing-dir"),
    # serve (Frigate's zmq detector; endpoint checks come before pyzmq is needed)
    ("serve {m}", 2, "--frigate-zmq"),
    ("serve {m} --frigate-zmq http://127.0.0.1:5555", 2, "expected tcp://HOST:PORT"),
    ("serve {m} --frigate-zmq ipc://{tmp}/no-such-dir/sock", 2, "does not exist"),
    ("serve {tmp}/missing.onnx --frigate-zmq tcp://127.0.0.1:5555", 2, "model file not found"),
    # the command itself
    ("", 2, "no command given"),
    ("predcit {m} {img}", 2, "did you mean predict"),
]


def _driver(cases: list[list[str]], out_path: str) -> None:
    """Child side: run each argv through main() with fd 1/2 captured; write results as JSON."""
    import tempfile

    from edgerun.runtime.cli import main

    results = []
    for argv in cases:
        with tempfile.TemporaryFile("w+") as err, open(os.devnull, "w") as null:
            sys.stdout.flush()
            sys.stderr.flush()
            saved = os.dup(1), os.dup(2)
            os.dup2(null.fileno(), 1)
            os.dup2(err.fileno(), 2)
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code
            except BaseException:  # noqa: BLE001 - what the user would see: a traceback
                traceback.print_exc()
                code = "raised"
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
            err.seek(0)
            results.append({"argv": argv, "code": code, "stderr": err.read()})
    Path(out_path).write_text(json.dumps(results))


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    from stream_fixtures import frames, tiny_detector, write_video

    import cv2

    tmp = tmp_path_factory.mktemp("cli errors")
    d = tmp / "inputs"
    d.mkdir()
    (tmp / "empty").mkdir()
    img = d / "a.jpg"
    cv2.imwrite(str(img), frames(1, (96, 128))[0])
    video = write_video(str(d / "clip.avi"), frames(4))
    (tmp / "existing_file").write_text("not a model, not a folder")
    return {"m": tiny_detector(str(tmp / "tiny.onnx")), "img": str(img), "video": video, "dir": str(d),
            "empty": str(tmp / "empty"), "file": str(tmp / "existing_file"), "tmp": str(tmp)}


@pytest.fixture(scope="module")
def table(places, tmp_path_factory):
    """Every row of CASES, run in one child process."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        fill = {**places, "busy": str(busy.getsockname()[1])}
        argvs = [[a.format(**fill) for a in line.split()] for line, _, _ in CASES]
        out = tmp_path_factory.mktemp("table") / "results.json"
        proc = subprocess.run([sys.executable, __file__, json.dumps(argvs), str(out)], capture_output=True,
                              text=True, timeout=300, cwd=places["tmp"], stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize("row", range(len(CASES)), ids=[c[0].split()[0] if c[0] else "-" for c in CASES])
def test_bad_invocation_is_one_clear_line(table, row):
    line, code, fragment = CASES[row]
    if line.startswith("batch ") and fragment != "required" and not _HAVE_RAY:
        # without the ray extra every other batch mistake meets the install hint first (still one line)
        from edgerun.runtime.batch import INSTALL_HINT
        fragment = INSTALL_HINT
    r = table[row]
    err = r["stderr"]
    lines = err.splitlines()
    assert "Traceback" not in err, f"{line}:\n{err}"
    assert len(lines) == 1 and lines[0].startswith("edgerun: error: "), f"{line}:\n{err}"
    assert fragment in lines[0], f"{line}: {lines[0]}"
    assert r["code"] == code, f"{line}: exit {r['code']}: {lines[0]}"


def test_every_command_is_in_the_table():
    from edgerun.runtime.cli.args import ALL_COMMANDS

    assert {c[0].split()[0] for c in CASES if c[0]} >= set(ALL_COMMANDS)


def _cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgerun.runtime.cli", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.parametrize("command", ["info {m} --json", "predict {m} {dir} --json", "predict {m} {dir}"])
def test_closed_stdout_ends_quietly(places, command):
    """`edgerun ... | head`: the reader went away. No traceback, no 'Exception ignored', exit 141
    (128 + SIGPIPE, what a shell shows for `cat` in the same place)."""
    p = _cli(*[a.format(**places) for a in command.split()])
    p.stdout.close()  # no reader: the first write gets EPIPE
    err = p.stderr.read()
    assert p.wait(120) == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err and "error" not in err, err


if __name__ == "__main__":
    _driver(json.loads(sys.argv[1]), sys.argv[2])
