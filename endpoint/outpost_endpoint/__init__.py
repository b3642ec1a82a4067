"""``outpost_endpoint``: the Outpost endpoint -- the daemon on an HPC login node that receives
tasks from the Outpost service through RabbitMQ, runs them and sends results back.

Layout (one concept per module): ``cli`` (``outpost-endpoint``), ``config`` (config.yaml),
``paths`` (files under OUTPOST_HOME), ``service_link`` (HTTP registration), ``runner`` and
``daemon`` (running and detaching), ``pidfile``, ``service`` (engine + AMQP link), ``amqp/``
(task consumer, result publisher), ``engine/`` (engines), ``execution`` (one task in a worker).

The names below load on first use (PEP 562): the high-throughput engine's managers and workers
import modules of this package on compute nodes, and the daemon's AMQP link, configuration and
engines are no part of their start (see ``benchmarks/README.md``, engine cold start).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from outpost.runtime.lazy import lazy_attributes
from outpost_endpoint.errors import (
    AlreadyRunning,
    BrokerError,
    ConfigError,
    DaemonError,
    EndpointError,
    EndpointNotFound,
    EngineError,
    NotRunning,
    RegistrationError,
)

if TYPE_CHECKING:
    from outpost_endpoint.config import EndpointConfig, load_config, parse_config
    from outpost_endpoint.engine import Engine, ProcessPoolEngine, build_engine
    from outpost_endpoint.service import EndpointService

    __version__: str


def _version() -> str:
    from outpost.protocol.version import runtime_versions

    return runtime_versions()["outpost"]


_EXPORTS: dict[str, str | Callable[[], Any]] = {
    "__version__": _version,
    "EndpointConfig": "outpost_endpoint.config",
    "load_config": "outpost_endpoint.config",
    "parse_config": "outpost_endpoint.config",
    "Engine": "outpost_endpoint.engine",
    "ProcessPoolEngine": "outpost_endpoint.engine",
    "build_engine": "outpost_endpoint.engine",
    "EndpointService": "outpost_endpoint.service",
}

__all__ = [
    "AlreadyRunning",
    "BrokerError",
    "ConfigError",
    "DaemonError",
    "EndpointConfig",
    "EndpointError",
    "EndpointNotFound",
    "EndpointService",
    "Engine",
    "EngineError",
    "NotRunning",
    "ProcessPoolEngine",
    "RegistrationError",
    "__version__",
    "build_engine",
    "load_config",
    "parse_config",
]


__getattr__ = lazy_attributes(__name__, _EXPORTS)
