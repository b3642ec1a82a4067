"""``outpost_endpoint``: the Outpost endpoint -- the daemon on an HPC login node that receives
tasks from the Outpost service through RabbitMQ, runs them and sends results back.

Layout (one concept per module): ``cli`` (``outpost-endpoint``), ``config`` (config.yaml),
``paths`` (files under OUTPOST_HOME), ``service_link`` (HTTP registration), ``runner`` and
``daemon`` (running and detaching), ``pidfile``, ``service`` (engine + AMQP link), ``amqp/``
(task consumer, result publisher), ``engine/`` (engines), ``execution`` (one task in a worker).
"""

from outpost.protocol.version import runtime_versions as _runtime_versions
from outpost_endpoint.config import EndpointConfig, load_config, parse_config
from outpost_endpoint.engine import Engine, ProcessPoolEngine, build_engine
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
from outpost_endpoint.service import EndpointService

__version__ = _runtime_versions()["outpost"]

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
