"""Engines run tasks: :class:`Engine` is the interface, ``build_engine`` picks one from config.

The names load on first use (PEP 562), so that a high-throughput manager or worker, which
imports modules of this package on a compute node, does not import the process-pool engine and
the endpoint's configuration on its way to its first task.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from outpost_endpoint.engine.base import Engine
    from outpost_endpoint.engine.process_pool import ProcessPoolEngine
    from outpost_endpoint.engine.registry import ENGINES, build_engine

_EXPORTS = {
    "ENGINES": "outpost_endpoint.engine.registry",
    "Engine": "outpost_endpoint.engine.base",
    "ProcessPoolEngine": "outpost_endpoint.engine.process_pool",
    "build_engine": "outpost_endpoint.engine.registry",
}

__all__ = ["ENGINES", "Engine", "ProcessPoolEngine", "build_engine"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
