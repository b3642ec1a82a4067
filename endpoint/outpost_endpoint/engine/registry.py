"""Which engine class a ``config.yaml`` ``engine.type`` names, and building it."""

from __future__ import annotations

from outpost_endpoint.config import ENGINE_TYPES, EngineConfig
from outpost_endpoint.engine.base import Engine
from outpost_endpoint.engine.process_pool import ProcessPoolEngine
from outpost_endpoint.errors import ConfigError

ENGINES: dict[str, type[Engine]] = {"process-pool": ProcessPoolEngine}


def build_engine(config: EngineConfig) -> Engine:
    """The engine ``config`` asks for, not yet started."""
    if config.type == "high-throughput" and config.type not in ENGINES:
        raise ConfigError(
            "engine.type: 'high-throughput' is not available in this version yet; use "
            "type: process-pool (with max_workers) for now"
        )
    if config.type not in ENGINES:
        raise ConfigError(f"engine.type: {config.type!r} is not one of: {', '.join(ENGINE_TYPES)}")
    if config.type == "process-pool":
        return ProcessPoolEngine(config.max_workers)
    return ENGINES[config.type]()
