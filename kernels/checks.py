"""Validation helpers for the public kernel wrappers (and the task classes' option checks). Numba does
not bounds-check, so every wrapper checks dtype, rank, shape and ``out=`` buffers here before any
njit call."""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import EdgerunTypeError, EdgerunValueError


def array(name: str, x, dtypes, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``x`` as an ndarray after checking its dtype (one of ``dtypes``) and rank."""
    if not isinstance(x, np.ndarray):
        raise EdgerunTypeError(f"{name}: expected a numpy.ndarray, got {type(x).__name__}")
    dtypes = tuple(np.dtype(d) for d in (dtypes if isinstance(dtypes, (tuple, list)) else (dtypes,)))
    if x.dtype not in dtypes:
        want = " or ".join(str(d) for d in dtypes)
        raise EdgerunTypeError(f"{name}: expected dtype {want}, got {x.dtype}")
    if ndim is not None:
        dims = ndim if isinstance(ndim, tuple) else (ndim,)
        if x.ndim not in dims:
            raise EdgerunValueError(f"{name}: expected {' or '.join(map(str, dims))} dimensions, "
                                    f"got shape {x.shape}")
    return x


def out_buffer(name: str, out, shape: tuple[int, ...], dtype) -> np.ndarray:
    """Allocate, or check a caller-provided, C-contiguous writable output buffer."""
    dtype = np.dtype(dtype)
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise EdgerunTypeError(f"{name}: expected a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise EdgerunTypeError(f"{name}: expected dtype {dtype}, got {out.dtype}")
    if tuple(out.shape) != tuple(shape):
        raise EdgerunValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(out.shape)}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise EdgerunValueError(f"{name}: must be a C-contiguous writable array")
    return out


def positive_int(name: str, v) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise EdgerunTypeError(f"{name}: expected an int, got {type(v).__name__} {v!r} "
                               f"(pass a whole number > 0; fractions are refused, not truncated)")
    if v <= 0:
        raise EdgerunValueError(f"{name}: expected > 0, got {v} (pass a whole number > 0)")
    return int(v)


def finite_float(name: str, v, lo: float | None = None, hi: float | None = None) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise EdgerunTypeError(f"{name}: expected a number, got {type(v).__name__} {v!r}") from None
    if not np.isfinite(f) or (lo is not None and f < lo) or (hi is not None and f > hi):
        rng = f" in [{lo}, {hi}]" if lo is not None or hi is not None else ""
        raise EdgerunValueError(f"{name}: expected a finite number{rng}, got {v}")
    return f


def flag(name: str, v) -> bool:
    """A real bool (numpy's too); 0/1/"yes" are refused rather than guessed."""
    if not isinstance(v, (bool, np.bool_)):
        raise EdgerunTypeError(f"{name}: expected True or False, got {type(v).__name__} {v!r}")
    return bool(v)


def choice(name: str, v, choices: tuple) -> Any:
    """``v`` when it is one of ``choices``."""
    if v not in choices:
        raise EdgerunValueError(f"{name}: expected one of {choices}, got {v!r}")
    return v
