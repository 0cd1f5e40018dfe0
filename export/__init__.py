"""edgerun.export: trained models to verified, self-describing ONNX (see the export issue).

Names load on first use, so ``edgerun``'s CLI can register ``export`` without importing it; torch is
only imported inside the functions that need it.
"""
from __future__ import annotations

from typing import Any

__all__ = ["finish_onnx", "ExportError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import finish
        return getattr(finish, name)
    raise AttributeError(f"module 'edgerun.export' has no attribute {name!r}")
