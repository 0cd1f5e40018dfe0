"""Read-only installs and hostile environments, run as an unprivileged user (root ignores file
permissions): the installed package, HOME, the current directory and every cache candidate are
read-only; no TTY; LANG=C; model and photos under paths with spaces and non-ASCII names.

The package itself is the current venv + editable source, both root-owned: read-only to that user.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import shared_file
from reliability_util import json_records, run_child, run_cli

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


@pytest.fixture(scope="module")
def uid() -> int:
    """An unprivileged uid that can run this interpreter and import edgerun, else a skip saying why."""
    uid = _free_uid()
    probe = run_child([sys.executable, "-c", "import edgerun.runtime"], cwd="/", user=uid, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"an unprivileged user cannot import edgerun from this install (interpreter "
                    f"{sys.executable} or the source tree lies under a directory it cannot read, e.g. a 0700 "
                    f"home or mktemp -d): {probe.stderr.strip().splitlines()[-1:]}")
    return uid


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.lstat().st_size for p in root.rglob("*")}


@pytest.fixture
def sandbox(uid):
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
    tmp_cache = Path(tempfile.gettempdir()) / f"edgerun-{uid}"
    tmp_cache.mkdir()  # _free_uid checked it did not exist
    for d in (root, home, cwd, tmp, photos, models, tmp_cache):
        os.chmod(d, 0o555)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGERUN_", "XDG_", "LC_", "PYTHON"))}
    env.update(HOME=str(home), TMPDIR=str(tmp), LANG="C", LC_ALL="C", TERM="dumb")
    yield {"root": root, "cwd": cwd, "photos": photos, "model": model, "env": env, "tmp_cache": tmp_cache, "uid": uid}
    for d in (root, home, cwd, tmp, photos, models, tmp_cache):
        os.chmod(d, 0o755)
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(tmp_cache, ignore_errors=True)


def test_predict_with_everything_read_only(sandbox):
    before = _tree(sandbox["root"])
    res = run_cli(["predict", str(sandbox["model"]), str(sandbox["photos"]), "--json"], env=sandbox["env"],
                  cwd=str(sandbox["cwd"]), user=sandbox["uid"], timeout=300)
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
        res = run_child([sys.executable, "-c", _PROBE], env=env, cwd=str(sandbox["cwd"]), user=sandbox["uid"], timeout=60)
        assert res.returncode == 0, res.describe()
        lines = res.stdout.splitlines()
        assert lines[0] == lines[1] and lines[0].startswith(str(writable_tmp / f"edgerun-{sandbox['uid']}")), lines
        assert res.stderr.count("EDGERUN_CACHE_DIR is not writable") == 1, res.stderr
    finally:
        shutil.rmtree(writable_tmp, ignore_errors=True)
