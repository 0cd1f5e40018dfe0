"""edgerun's exceptions. Each is also the matching builtin, so ``except ValueError`` still works."""
from __future__ import annotations

__all__ = ["EdgerunError", "EdgerunTypeError", "EdgerunValueError"]


class EdgerunError(Exception):
    """Base class of every error edgerun raises on purpose."""


class EdgerunTypeError(EdgerunError, TypeError):
    """An argument has the wrong type or dtype."""


class EdgerunValueError(EdgerunError, ValueError):
    """An argument has the wrong shape, size or value."""
