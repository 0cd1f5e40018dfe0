"""The layout promise: one import root (edgerun.*) whose paths mirror the folders."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"runtime": "edgerun.runtime", "kernels": "edgerun.kernels", "export": "edgerun.export"}


def _run(code: str) -> subprocess.CompletedProcess:
    # From a neutral directory, so the repository root is not on sys.path.
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/",
                          timeout=120)


def _modules() -> list[str]:
    mods = []
    for folder, pkg in PACKAGES.items():
        for f in sorted((ROOT / folder).rglob("*.py")):
            rel = f.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            mods.append(".".join([pkg, *parts]))
    return mods


def _source_files() -> set[str]:
    """Every file of the three package folders, as its path inside the wheel (edgerun/runtime/...)."""
    out = set()
    for folder, pkg in PACKAGES.items():
        for f in (ROOT / folder).rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
                out.add("/".join([*pkg.split("."), *f.relative_to(ROOT / folder).parts]))
    return out


def test_wheel_holds_every_module_and_data_file(tmp_path):
    # An unlisted sub-package imports fine from an editable install and is silently missing from the
    # wheel: build the wheel (from a copy, so the tree gets no build/ or egg-info) and compare.
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in PACKAGES:
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "-q", "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("edgerun-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packaged = {n for n in names if n.startswith("edgerun/")}
    expected = _source_files()
    assert len(expected) > 20 and "edgerun/runtime/data/demo.onnx" in expected
    assert sorted(expected - packaged) == [], "files missing from the wheel (a package or its data not listed)"
    assert sorted(packaged - expected) == [], "files in the wheel that are not in the source tree"
    assert not [n for n in names if n.split("/")[0] in PACKAGES], "a bare top-level package in the wheel"


def test_every_module_on_disk_imports_as_edgerun():
    mods = _modules()
    assert len(mods) > 10
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in mods)
    r = _run(code)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("bare", ["kernels", "runtime", "export"])
def test_bare_top_level_names_are_not_importable(bare):
    r = _run(f"import {bare}")
    assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr


def test_runtime_imports_no_torch_and_compiles_nothing():
    mods = [m for m in _modules() if not m.startswith("edgerun.export")]
    code = ("import importlib, sys\n"
            f"mods = [importlib.import_module(m) for m in {mods!r}]\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "from edgerun.kernels._jit import _Kernel\n"
            "ks = [v for m in mods for v in vars(m).values() if isinstance(v, _Kernel)]\n"
            "assert len(ks) >= 5, ks\n"
            "compiled = [k.__name__ for k in ks if k._dispatcher is not None]\n"
            "assert not compiled, compiled\n"
            "print('ok', len(ks))")
    r = _run(code)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_console_script_is_installed():
    r = subprocess.run([str(Path(sys.executable).parent / "edgerun"), "--help"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "predict" in r.stdout


def test_shared_data_is_found_in_one_place():
    # ../shared (or $EDGERUN_SHARED) is resolved only by tests/helpers.shared_dir and, for the
    # benchmarks (which never import tests), benchmarks/_shared.shared_dir.
    owners = {ROOT / "tests" / "helpers.py", ROOT / "benchmarks" / "_shared.py"}
    spelled = re.compile(r"""/ *["']shared["']|["'](\.\./)*shared["'] *\)""")  # Path / "shared", join(.., "shared")
    offenders = [f"{f.relative_to(ROOT)}:{i}" for d in ("tests", "benchmarks") for f in sorted((ROOT / d).rglob("*.py"))
                 if f not in owners and f != Path(__file__) for i, line in enumerate(f.read_text().splitlines(), 1)
                 if spelled.search(line) or "EDGERUN_SHARED\"" in line and "environ" in line]
    assert offenders == [], "resolve ../shared through tests/helpers.shared_dir or benchmarks/_shared"
    for owner in owners:
        assert "EDGERUN_SHARED" in owner.read_text()
