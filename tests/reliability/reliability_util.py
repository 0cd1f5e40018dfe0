"""Helpers for the reliability suite: child processes (a crash is a failure, not a lost run),
the edgerun CLI in a child with its peak RSS, and process gauges read from /proc."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# Peak RSS from VmHWM (this process's own high-water mark): a child's ru_maxrss on Linux carries
# over the size of the (large) pytest parent it was forked from.
_CLI_DRIVER = """
import sys
from edgerun.runtime.cli import main
code = main(sys.argv[1:])
sys.stdout.flush()
hwm = next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(f"EDGERUN_TEST_MAXRSS_KB={hwm}", file=sys.stderr)
sys.exit(code)
"""


@dataclass
class ChildResult:
    returncode: int
    stdout: str
    stderr: str
    maxrss_mb: float | None = None

    @property
    def crashed(self) -> bool:
        """Killed by a signal (segfault, abort): negative return code."""
        return self.returncode < 0

    def describe(self) -> str:
        sig = f" ({signal.Signals(-self.returncode).name})" if self.crashed else ""
        return (f"exit {self.returncode}{sig}\n--- stdout (tail)\n{self.stdout[-3000:]}\n"
                f"--- stderr (tail)\n{self.stderr[-3000:]}")


def run_child(argv: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None,
              timeout: float = 120, user: int | None = None) -> ChildResult:
    """Run ``argv`` with stdin closed (no TTY); ``user``: run as that uid/gid via setpriv."""
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--"] + argv
    full_env = dict(os.environ if env is None else env)
    try:
        p = subprocess.run(argv, env=full_env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace")
        err = (exc.stderr or b"").decode(errors="replace")
        raise AssertionError(f"child timed out after {timeout} s (deadlock?): {argv[:6]}\n{out[-2000:]}\n"
                             f"{err[-2000:]}") from None
    err = p.stderr.decode(errors="replace")
    m = re.search(r"EDGERUN_TEST_MAXRSS_KB=(\d+)", err)
    return ChildResult(p.returncode, p.stdout.decode(errors="replace"), err,
                       int(m.group(1)) / 1024 if m else None)


def run_cli(args: list[str], *, python: str = sys.executable, **kw) -> ChildResult:
    """``edgerun ARGS`` in a child process (``python``, default this interpreter), reporting its peak RSS."""
    return run_child([python, "-c", _CLI_DRIVER, *args], **kw)


PACKAGE_DIRS = {"runtime": "edgerun/runtime", "kernels": "edgerun/kernels", "export": "edgerun/export"}


def _runtime_distributions() -> list:
    """edgerun's runtime dependencies and theirs (no extras), as installed distributions."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    seen, todo, out = set(), ["edgerun"], []
    while todo:
        name = todo.pop()
        for spec in md.requires(name) or []:
            req = Requirement(spec)
            key = req.name.lower().replace("_", "-")
            if key in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
                continue
            seen.add(key)
            try:
                out.append(md.distribution(req.name))
            except md.PackageNotFoundError:
                continue
            todo.append(req.name)
    # Another distribution may own files of the same import package (ultralytics pulls opencv-python
    # beside opencv-python-headless: the cv2/ on disk is the last one installed, with its own .libs).
    tops = {f.parts[0] for d in out for f in d.files or [] if len(f.parts) > 1 and f.parts[0] != ".."}
    tops = {t for t in tops if not t.endswith((".dist-info", ".libs")) and t != "__pycache__"}
    names = {d.metadata["Name"] for d in out}
    for d in md.distributions():
        if d.metadata["Name"] not in names and any(len(f.parts) > 1 and f.parts[0] in tops for f in d.files or []):
            names.add(d.metadata["Name"])
            out.append(d)
    return out


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # same filesystem: instant, and the file keeps its (world-readable) mode
    except OSError:
        shutil.copy2(src, dst)


def world_readable_install(dest: Path) -> Path:
    """A copy of what ``import edgerun.runtime`` needs, in ``dest/site`` (mode 0755, root-owned, so
    read-only to other users): the package folders laid out as the wheel installs them, and every
    file of each runtime dependency's distribution. For a source tree or venv another user cannot
    read (a clone under a 0700 ``mktemp -d`` or home). Returns the directory to put on PYTHONPATH."""
    site = dest / "site"
    site.mkdir(parents=True)
    for folder, target in PACKAGE_DIRS.items():
        shutil.copytree(ROOT / folder, site / target, ignore=shutil.ignore_patterns("__pycache__"),
                        copy_function=_link_or_copy)
    for dist in _runtime_distributions():
        base = Path(dist.locate_file("")).resolve()
        for f in dist.files or []:
            src = Path(dist.locate_file(f)).resolve()
            if base not in src.parents or "__pycache__" in src.parts or not src.is_file():
                continue  # console scripts (../../bin) and byte code stay behind
            dst = site / src.relative_to(base)
            if dst.exists():  # a file two distributions list (cv2/ of both OpenCV wheels): the same file
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(str(src), str(dst))
    for d in [dest, *(p for p in dest.rglob("*") if p.is_dir())]:
        os.chmod(d, 0o755)
    return site


def run_pytest_child(module: Path, *, env_extra: dict[str, str] | None = None, timeout: float = 240,
                     extra_args: tuple[str, ...] = ()) -> ChildResult:
    """pytest on one module in a child, so a segfault fails the calling test instead of the run."""
    env = dict(os.environ)
    env.update(env_extra or {})
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(module.parent),
            "--confcutdir", str(module.parent), *extra_args, str(module)]
    return run_child(argv, env=env, cwd=str(module.parent), timeout=timeout)


def json_records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]

