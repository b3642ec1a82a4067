"""The high-throughput engine: an interchange on the login node, a manager per node, a worker per
GPU or core.

:class:`HighThroughputEngine` loads on first use (PEP 562): managers and workers import this
package's :mod:`.manager` and :mod:`.worker` on compute nodes, where the engine's providers,
launchers and scaling are not needed and their imports would only delay the first task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from outpost_endpoint.engine.high_throughput.engine import HighThroughputEngine

__all__ = ["HEARTBEAT_PERIOD", "HighThroughputEngine"]

#: Default seconds between the heartbeats of the interchange and its managers, each way
#: (config.yaml ``heartbeat_period``).  Here, not in :mod:`.wire`, so that reading the
#: configuration does not import the protocol's messages.
HEARTBEAT_PERIOD = 2.0


def __getattr__(name: str) -> Any:
    if name == "HighThroughputEngine":
        from outpost_endpoint.engine.high_throughput.engine import HighThroughputEngine

        return HighThroughputEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
