"""No private name crosses a module of the package: every module under runtime/, kernels/ and
export/ is parsed with ``ast``; a name starting with ``_`` (dunders aside) imported from another
edgerun module (``from .x import _y``, ``from edgerun.x import _y``), read as an attribute of an
imported edgerun name (``x._y``), or a private module (``edgerun.kernels._jit``) imported from
outside the package that holds it, is a failure naming file and line."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runtime", "kernels", "export")


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["edgerun", *parts])


def resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    """The absolute module an ``ImportFrom`` reads from."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def private_module_outside(target: str, importer: str) -> str | None:
    """``target`` has a private component (``edgerun.kernels._jit``) and ``importer`` is not inside
    the package holding it: the private component, else None."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if private(part):
            owner = ".".join(parts[:i])
            if not (importer == owner or importer.startswith(owner + ".")):
                return part
    return None


def violations(path: Path) -> list[str]:
    module, is_package = module_name(path), path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    rel = path.relative_to(ROOT)
    found, imported = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = resolve(module, node, is_package)
            if not source.startswith("edgerun"):
                continue
            part = private_module_outside(source, module)
            if part:
                found.append(f"{rel}:{node.lineno}: from {source} import ... (private module {part})")
            for alias in node.names:
                if private(alias.name) and source != module:
                    found.append(f"{rel}:{node.lineno}: from {source} import {alias.name}")
                imported[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if not alias.name.startswith("edgerun"):
                    continue
                part = private_module_outside(alias.name, module)
                if part:
                    found.append(f"{rel}:{node.lineno}: import {alias.name} (private module {part})")
                imported[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in imported:
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)} (attribute of {imported[base.id]})")
    return found


def package_modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_the_package_has_modules():
    assert len(package_modules()) > 30


@pytest.mark.parametrize("package", PACKAGES)
def test_no_private_name_crosses_a_module(package):
    found = [v for p in package_modules() if p.relative_to(ROOT).parts[0] == package for v in violations(p)]
    assert not found, "private names used across modules (make them public or move them):\n" + "\n".join(found)


def test_the_checker_finds_each_kind(tmp_path, monkeypatch):
    """The checker itself: each forbidden form is found, the allowed ones are not."""
    pkg = tmp_path / "runtime" / "cli"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    bad = pkg / "bad.py"
    bad.write_text("from .args import _parser\n"
                   "from edgerun.runtime.spec import _hidden, public\n"
                   "from edgerun.kernels._jit import cache_dir\n"
                   "import edgerun.kernels._jit\n"
                   "from . import args\n"
                   "args._COMMANDS\n")
    good = pkg / "good.py"
    good.write_text("from .args import COMMANDS\nfrom __future__ import annotations\n"
                    "def _mine():\n    return COMMANDS.__class__\n"
                    "class A:\n    def f(self):\n        return self._x\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    found = violations(bad)
    assert len(found) == 5, found
    assert any("_parser" in f for f in found) and any("_hidden" in f for f in found)
    assert sum("private module _jit" in f for f in found) == 2
    assert any("args._COMMANDS" in f for f in found)
    assert violations(good) == []
    kernel = tmp_path / "kernels" / "nms.py"
    kernel.parent.mkdir()
    kernel.write_text("from ._jit import jit\n")
    assert violations(kernel) == []  # a private module used inside its own package
