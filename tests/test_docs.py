"""Documentation that cannot rot: every fenced block of README.md and docs/*.md marked runnable
(```` ```bash test ```` or ```` ```python test ````; a plain ```` ```bash ```` block is not run) is
executed, from the repository root's point of view but in a temporary HOME and working folder:
shell blocks with ``bash -euo pipefail``, Python blocks as scripts, the venv's ``bin`` first on PATH,
``SHARED`` = the shared models and photos. A block using ``SHARED`` skips, with the reason, when that
folder is absent. The test id names the file and the block's first line."""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import ROOT, shared_dir

TIMEOUT_S = 120  # a first run on an empty kernel cache compiles the kernels (~10-60 s on 2 loaded cores)
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")
#: The README's two commands, verbatim: the first thing a newcomer types, and CI's test command.
INSTALL_COMMAND = ('python3 -m venv .venv && .venv/bin/pip install -e ".[dev]" && '
                   '.venv/bin/edgerun predict --save runs/demo')
TEST_COMMAND = ".venv/bin/pytest"


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str  # "bash" or "python"
    runnable: bool
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file (CommonMark fences: ``` or ~~~, closed by the same
    character at least as long); the info string's words give the language and the ``test`` mark."""
    out, lines, i = [], path.read_text(encoding="utf-8").splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, words, start = m["fence"], m["info"].split(), i
        body, i = [], i + 1
        while i < len(lines):
            close = FENCE.match(lines[i])
            if close and close["fence"][0] == fence[0] and len(close["fence"]) >= len(fence) and not close["info"].strip():
                break
            body.append(lines[i][len(m["indent"]):] if lines[i].startswith(m["indent"]) else lines[i])
            i += 1
        else:
            raise AssertionError(f"{path.relative_to(ROOT)}:{start + 1}: fenced block never closed")
        lang = words[0] if words else ""
        out.append(Block(path, start + 1, lang, "test" in words[1:], "\n".join(body) + "\n"))
        i += 1
    return out


def runnable() -> list[Block]:
    return [b for p in doc_files() for b in blocks(p) if b.runnable]


def run_block(block: Block, tmp: Path, shared: Path) -> subprocess.CompletedProcess:
    home, work = tmp / "home", tmp / "work"
    home.mkdir()
    work.mkdir()
    env = {**os.environ, "HOME": str(home), "SHARED": str(shared), "EDGERUN_REPO": str(ROOT),
           "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
    env.pop("PYTHONPATH", None)
    if "EDGERUN_CACHE_DIR" not in env:  # a temporary HOME must not mean compiling every kernel again
        from edgerun.kernels import cache_dir
        if cache_dir():
            env["EDGERUN_CACHE_DIR"] = os.path.dirname(cache_dir())
    if block.lang == "bash":
        cmd = ["bash", "-euo", "pipefail", "-c", block.code]
    else:
        script = tmp / "block.py"
        script.write_text(block.code, encoding="utf-8")
        cmd = [sys.executable, str(script)]
    return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


def test_runnable_blocks_are_bash_or_python():
    bad = [f"{b.id}: ```{b.lang} test" for b in runnable() if b.lang not in ("bash", "python")]
    assert not bad, "only ```bash test and ```python test blocks can be run:\n" + "\n".join(bad)


def test_the_docs_have_runnable_blocks():
    found = runnable()
    assert any(b.path.name == "README.md" for b in found), "README.md's quick start has no runnable block"
    assert len(found) >= 5, [b.id for b in found]


def test_readme_keeps_the_two_commands_verbatim():
    """The install-and-run command and the test command are what CI and a newcomer type: each
    stands alone on a line of a plain bash block of README.md."""
    lines = {line.strip() for b in blocks(ROOT / "README.md") if b.lang == "bash" for line in b.code.splitlines()}
    assert INSTALL_COMMAND in lines
    assert TEST_COMMAND in lines


def test_links_between_docs_resolve():
    """Relative links of README.md and docs/*.md name files that exist, except the pages teammates
    are still writing (the coordinator merges them)."""
    pending = {"boards.md", "cameras.md", "integrations.md", "tasks.md"}
    missing = []
    for path in doc_files():
        text = path.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            if not (path.parent / target).exists() and Path(target).name not in pending:
                missing.append(f"{path.relative_to(ROOT)}: {target}")
    assert not missing, missing


def cli_sections() -> dict[str, str]:
    """docs/cli.md's ``### edgerun COMMAND`` sections: command -> its text."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    parts = re.split(r"^### edgerun (\S+)[^\n]*$", text, flags=re.M)
    return {name: re.split(r"^##? ", body, maxsplit=1, flags=re.M)[0] for name, body in zip(parts[1::2], parts[2::2])}


def test_cli_md_lists_every_command_and_option():
    """docs/cli.md has a section per command of ``edgerun --help`` naming each of its options, so a
    new command or option without documentation fails here."""
    from edgerun.runtime.cli.args import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    sections, missing = cli_sections(), []
    for command, parser in sub.choices.items():
        if command not in sections:
            missing.append(f"### edgerun {command} (the whole command)")
            continue
        for action in parser._actions:
            for opt in action.option_strings:
                if opt not in ("-h", "--help") and not re.search(rf"`[^`]*{re.escape(opt)}\b", sections[command]):
                    missing.append(f"edgerun {command} {opt}")
    assert not missing, "add these to docs/cli.md (see edgerun COMMAND --help):\n" + "\n".join(missing)
    assert set(sections) <= set(sub.choices), f"docs/cli.md documents commands edgerun does not have: {set(sections) - set(sub.choices)}"


@pytest.mark.parametrize("block", runnable(), ids=lambda b: b.id)
def test_block(block: Block, tmp_path):
    shared = shared_dir()
    if "SHARED" in block.code and not shared.is_dir():
        pytest.skip(f"{block.id} uses $SHARED and the shared folder {shared} is absent")
    try:
        r = run_block(block, tmp_path, shared)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.id}: still running after {TIMEOUT_S} s:\n{block.code}")
    assert r.returncode == 0, (f"{block.id} exited {r.returncode}:\n{block.code}\n--- stdout\n"
                               f"{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}")


def test_collector_reads_fences(tmp_path, monkeypatch):
    """The collector itself: marks, languages, longer fences, indented fences, unclosed fences."""
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    doc = tmp_path / "x.md"
    doc.write_text("text\n```bash test\necho a\n```\n```bash\necho b\n```\n````python test\n"
                   "print('```')\n```\n````\n  ```bash test\n  echo c\n  ```\n~~~\nplain\n~~~\n")
    got = blocks(doc)
    assert [(b.line, b.lang, b.runnable) for b in got] == [
        (2, "bash", True), (5, "bash", False), (8, "python", True), (12, "bash", True), (15, "", False)]
    assert got[2].code == "print('```')\n```\n" and got[3].code == "echo c\n"
    doc.write_text("```bash test\necho never closed\n")
    with pytest.raises(AssertionError, match="never closed"):
        blocks(doc)


def test_a_broken_command_fails(tmp_path):
    """A documented command that no longer works is a failure (non-zero exit), with pipefail."""
    shared = shared_dir()
    bad = Block(ROOT / "README.md", 1, "bash", True, "edgerun predcit x.onnx | cat\n")
    assert run_block(bad, tmp_path, shared).returncode != 0
    (tmp_path / "p").mkdir()
    bad = Block(ROOT / "README.md", 1, "python", True, "from edgerun.runtime import Detectr\n")
    assert run_block(bad, tmp_path / "p", shared).returncode != 0
