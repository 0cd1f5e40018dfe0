"""Runs the property tests of fuzz_api.py in child processes, so a segfault or abort inside a
kernel fails this test (with the child's output) instead of killing the whole run.

Twice: as shipped, and with NUMBA_BOUNDSCHECK=1 in a fresh EDGERUN_CACHE_DIR (Numba's cache key
ignores the boundscheck flag, so a warm cache would silently run unchecked code).
"""
from __future__ import annotations

import pytest
from reliability_util import HERE, run_pytest_child

FUZZ = HERE / "fuzz_api.py"


def _check(res) -> None:
    assert not res.crashed, "kernel crashed the child process: " + res.describe()
    assert res.returncode == 0, res.describe()
    assert " passed" in res.stdout and "error" not in res.stdout.splitlines()[-1], res.describe()


def test_api_fuzz_in_child():
    _check(run_pytest_child(FUZZ, env_extra={"EDGERUN_FUZZ_EXAMPLES": "50"}, timeout=300))


@pytest.mark.slow  # compiles every kernel signature from scratch, with bounds checks
def test_api_fuzz_in_child_with_boundscheck(tmp_path):
    env = {"NUMBA_BOUNDSCHECK": "1", "EDGERUN_CACHE_DIR": str(tmp_path / "cache"), "EDGERUN_FUZZ_EXAMPLES": "20"}
    _check(run_pytest_child(FUZZ, env_extra=env, timeout=400))
