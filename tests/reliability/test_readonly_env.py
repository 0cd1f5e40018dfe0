"""Read-only installs and hostile environments, run as an unprivileged user (root ignores file
permissions): the installed package, HOME, the current directory and every cache candidate are
read-only; no TTY; LANG=C; model and photos under paths with spaces and non-ASCII names.

The package itself is the current venv + editable source, both root-owned: read-only to that user;
when that user cannot read them (a clone under a 0700 directory), a world-readable copy of the package
and its runtime dependencies, still root-owned (``reliability_util.world_readable_install``).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import shared_file
from reliability_util import json_records, run_child, run_cli, world_readable_install

WARNING = "no writable cache directory"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="needs root and setpriv to run as an unprivileged user")


def _free_uid() -> int:
    """A uid with no passwd entry whose ``<tmp>/edgerun-<uid>`` does not exist: we own nothing of anyone's."""
    import pwd

    for uid in range(54321, 54421):
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        if not (Path(tempfile.gettempdir()) / f"edgerun-{uid}").exists():
            return uid
    pytest.skip("no free uid in 54321..54420 (each has a passwd entry or a <tmp>/edgerun-<uid>)")


_IMPORTS = "import edgerun.runtime, edgerun.kernels, numpy, numba, onnxruntime, cv2"


def _last_line(text: str) -> str:
    return (text.strip().splitlines() or ["(no output)"])[-1]


@pytest.fixture(scope="module")
def install():
    """An unprivileged uid and an install of edgerun it can import but not write: this venv and
    source tree when that user can read them, else a world-readable copy of the package and its
    runtime dependencies (a clone under a 0700 ``mktemp -d`` or home) run by the base interpreter;
    a skip saying why when neither works."""
    uid = _free_uid()
    probe = run_child([sys.executable, "-c", _IMPORTS], cwd="/", user=uid, timeout=60)
    if probe.returncode == 0:
        yield {"uid": uid, "python": sys.executable, "env": {}}
        return
    python = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    copy = Path(tempfile.mkdtemp(prefix="edgerun-ro-install-"))
    try:
        site = world_readable_install(copy)
        env = {"PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
        again = run_child([python, "-c", _IMPORTS], env={**os.environ, **env}, cwd="/", user=uid, timeout=60)
        if again.returncode != 0:
            pytest.skip(f"an unprivileged user cannot import edgerun from {sys.executable} "
                        f"({_last_line(probe.stderr)}) nor from a world-readable copy run by {python} "
                        f"({_last_line(again.stderr)})")
        yield {"uid": uid, "python": python, "env": env}
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.lstat().st_size for p in root.rglob("*")}


@pytest.fixture
def sandbox(install):
    """Root-owned dirs: read-only HOME, cwd and TMPDIR; the photos and model under odd names."""
    root = Path(tempfile.mkdtemp(prefix="edgerun ro é "))
    os.chmod(root, 0o755)
    home, cwd, tmp = root / "home", root / "cwd ro", root / "tmp"
    photos, models = root / "photos dir ü 日本", root / "models é"
    for d in (home, cwd, tmp, photos, models):
        d.mkdir()
    shutil.copy(shared_file("images", "bus.jpg"), photos / "bus photo é.jpg")
    shutil.copy(shared_file("images", "zidane.jpg"), photos / "zidane ß 写真.jpg")
    model = models / "yolo v8 ü.onnx"
    shutil.copy(shared_file("models", "yolov8n_320_int8dyn.onnx"), model)
    # the last cache candidate, <tmp>/edgerun-<uid>, is taken in advance, read-only
    uid = install["uid"]
    tmp_cache = Path(tempfile.gettempdir()) / f"edgerun-{uid}"
    tmp_cache.mkdir()  # _free_uid checked it did not exist
    for d in (root, home, cwd, tmp, photos, models, tmp_cache):
        os.chmod(d, 0o555)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGERUN_", "XDG_", "LC_", "PYTHON"))}
    env.update(HOME=str(home), TMPDIR=str(tmp), LANG="C", LC_ALL="C", TERM="dumb", **install["env"])
    yield {"root": root, "cwd": cwd, "photos": photos, "model": model, "env": env, "tmp_cache": tmp_cache, "uid": uid,
           "python": install["python"]}
    for d in (root, home, cwd, tmp, photos, models, tmp_cache):
        os.chmod(d, 0o755)
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(tmp_cache, ignore_errors=True)


def test_predict_with_everything_read_only(sandbox):
    before = _tree(sandbox["root"])
    res = run_cli(["predict", str(sandbox["model"]), str(sandbox["photos"]), "--json"], env=sandbox["env"],
                  cwd=str(sandbox["cwd"]), user=sandbox["uid"], timeout=300, python=sandbox["python"])
    assert res.returncode == 0, res.describe()
    assert "Traceback" not in res.stderr, res.describe()
    assert res.stderr.count(WARNING) == 1, res.stderr  # said once, not per kernel
    recs = {Path(r["source"]).name: r for r in json_records(res.stdout)}
    assert set(recs) == {"bus photo é.jpg", "zidane ß 写真.jpg"}
    assert len(recs["bus photo é.jpg"]["detections"]) >= 4
    assert _tree(sandbox["root"]) == before and list(sandbox["tmp_cache"].iterdir()) == []


_PROBE = ("import warnings, sys; warnings.simplefilter('always');"
          "from edgerun.kernels import cache_dir; print(cache_dir()); print(cache_dir())")


def test_cache_falls_back_to_tmp_and_says_so_once(sandbox):
    """EDGERUN_CACHE_DIR and HOME read-only, a writable tmp: the cache moves there, one warning."""
    env = dict(sandbox["env"], EDGERUN_CACHE_DIR=str(sandbox["root"] / "home"))
    writable_tmp = Path(tempfile.mkdtemp(prefix="edgerun tmp "))
    os.chmod(writable_tmp, 0o777)
    try:
        env["TMPDIR"] = str(writable_tmp)
        res = run_child([sandbox["python"], "-c", _PROBE], env=env, cwd=str(sandbox["cwd"]), user=sandbox["uid"], timeout=60)
        assert res.returncode == 0, res.describe()
        lines = res.stdout.splitlines()
        assert lines[0] == lines[1] and lines[0].startswith(str(writable_tmp / f"edgerun-{sandbox['uid']}")), lines
        assert res.stderr.count("EDGERUN_CACHE_DIR is not writable") == 1, res.stderr
    finally:
        shutil.rmtree(writable_tmp, ignore_errors=True)
