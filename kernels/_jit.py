"""The one place that owns Numba policy for edgerun.

- ``jit`` wraps ``numba.njit`` with ``nogil=True`` (host threads may call kernels concurrently)
  and lazy compilation: nothing is compiled at import; ``edgerun warmup`` compiles ahead of time.
- Cache: compiled kernels are cached in an edgerun-owned directory, found by probing in order
  ``$EDGERUN_CACHE_DIR``, ``$XDG_CACHE_HOME/edgerun`` (or ``~/.cache/edgerun``) and
  ``<tmp>/edgerun-<uid>``. The first writable one wins. If none is writable (a read-only
  install with a read-only home and tmp), kernels still work, compiled in memory, and a single
  warning says so. Numba's own global config (``NUMBA_CACHE_DIR``) is never changed.
- Threading: kernels marked ``parallel=True`` run under one process-wide lock. Numba's
  ``workqueue`` layer aborts the whole process when two host threads launch parallel kernels at
  once; serialising the launches makes every layer safe (tbb, omp and workqueue), and costs
  nothing because a parallel kernel already uses every thread it is given.
"""
from __future__ import annotations

import functools
import hashlib
import os
import sys
import tempfile
import threading
import warnings
from typing import Callable

import numba
from numba.core import caching

__all__ = ["jit", "inner", "cache_dir", "module_cache_path", "modules_cached", "PARALLEL_LOCK"]

PARALLEL_LOCK = threading.Lock()


def _candidate_dirs() -> list[str]:
    tag = f"numba-{numba.__version__}-py{sys.version_info[0]}{sys.version_info[1]}"
    out = []
    env = os.environ.get("EDGERUN_CACHE_DIR")
    if env:
        out.append(os.path.join(env, tag))
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    out.append(os.path.join(xdg, "edgerun", tag))
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    out.append(os.path.join(tempfile.gettempdir(), f"edgerun-{uid}", tag))
    return out


def _writable(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


@functools.lru_cache(maxsize=None)
def cache_dir() -> str | None:
    """The directory compiled kernels are cached in, or ``None`` when no candidate is writable."""
    candidates = _candidate_dirs()
    for i, path in enumerate(candidates):
        if _writable(path):
            if i > 0 and os.environ.get("EDGERUN_CACHE_DIR"):
                warnings.warn(f"edgerun: EDGERUN_CACHE_DIR is not writable; caching kernels in {path}",
                              RuntimeWarning, stacklevel=2)
            return path
    warnings.warn("edgerun: no writable cache directory (tried " + ", ".join(candidates)
                  + "); kernels are compiled in memory on first use. Set EDGERUN_CACHE_DIR to a "
                  "writable path to keep them between runs.", RuntimeWarning, stacklevel=2)
    return None


def module_cache_path(py_file: str) -> str | None:
    """Where the kernels of ``py_file`` are cached: ``<file>-<sha1 of its path>`` under ``cache_dir()``
    (None without a cache)."""
    root = cache_dir()
    if root is None:
        return None
    sub = hashlib.sha1(os.path.abspath(py_file).encode()).hexdigest()[:16]
    return os.path.join(root, f"{os.path.basename(py_file)}-{sub}")


def modules_cached(names) -> bool:
    """True when every kernel module named (``"decode.py"``, ...) of this install has compiled
    kernels in the cache (Numba writes ``*.nbi`` index files)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for name in names:
        folder = module_cache_path(os.path.join(here, name))
        if folder is None or not os.path.isdir(folder) or not any(f.endswith(".nbi") for f in os.listdir(folder)):
            return False
    return True


class _EdgerunLocator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
    """Caches next to nothing of the user's: everything goes under ``cache_dir()``."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = module_cache_path(py_file) or ""

    def get_cache_path(self):
        return self._cache_path

    @classmethod
    def from_function(cls, py_func, py_file):
        if cache_dir() is None or not os.path.exists(py_file):
            return None
        return cls(py_func, py_file)


class _EdgerunCacheImpl(caching.CompileResultCacheImpl):
    _locator_classes = [_EdgerunLocator]


class _EdgerunFunctionCache(caching.FunctionCache):
    _impl_class = _EdgerunCacheImpl


def _attach_cache(dispatcher) -> None:
    if cache_dir() is None:
        return
    try:
        dispatcher._cache = _EdgerunFunctionCache(dispatcher.py_func)
    except Exception as exc:  # noqa: BLE001 - a cache problem must never stop a kernel from running
        warnings.warn(f"edgerun: kernel cache disabled for {dispatcher.py_func.__name__}: {exc}",
                      RuntimeWarning, stacklevel=3)


class _Kernel:
    """A lazily compiled, cached Numba kernel. Calls compile on first use, never at import."""

    def __init__(self, fn: Callable, parallel: bool, fastmath: bool):
        self.py_func = fn
        self.parallel = parallel
        self._fastmath = fastmath
        self._dispatcher = None
        self._lock = threading.Lock()
        functools.update_wrapper(self, fn)

    @property
    def dispatcher(self):
        if self._dispatcher is None:
            with self._lock:
                if self._dispatcher is None:
                    d = numba.njit(nogil=True, parallel=self.parallel, fastmath=self._fastmath,
                                   cache=False)(self.py_func)
                    _attach_cache(d)
                    self._dispatcher = d
        return self._dispatcher

    def __call__(self, *args):
        d = self.dispatcher
        if self.parallel:
            with PARALLEL_LOCK:
                return d(*args)
        return d(*args)

    @property
    def signatures(self):
        return [] if self._dispatcher is None else list(self._dispatcher.signatures)


def jit(fn: Callable | None = None, *, parallel: bool = False, fastmath: bool = False):
    """Decorate a kernel. ``@jit`` or ``@jit(parallel=True)``.

    Kernels called from other kernels must be plain ``numba`` functions: use ``inner`` for them.
    """
    if fn is None:
        return lambda f: _Kernel(f, parallel, fastmath)
    return _Kernel(fn, parallel, fastmath)


def inner(fn: Callable):
    """A helper called from inside other kernels (inlined by LLVM; compiled with its caller)."""
    return numba.njit(nogil=True, cache=False, inline="never")(fn)
