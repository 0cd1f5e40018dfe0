"""Bridges to the software people run on their cameras: MQTT events (Home Assistant) and a
Frigate ZMQ detector. Each module imports its third-party client (paho-mqtt, pyzmq) lazily and
names the extra to install when it is missing."""
from __future__ import annotations

from edgerun.kernels.errors import EdgerunError

__all__ = ["MissingExtra", "require"]


class MissingExtra(EdgerunError, ImportError):
    """An optional dependency of an integration is not installed."""


def require(module: str, extra: str, what: str, dist: str):
    """Import ``module`` (from the ``dist`` package) or raise ``MissingExtra`` naming
    ``pip install 'edgerun[extra]'``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{what} needs the {dist} package (not installed): pip install "
                           f"'edgerun[{extra}]'") from None
