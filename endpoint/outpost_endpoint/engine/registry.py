"""Which engine class a ``config.yaml`` ``engine.type`` names, and building it."""

from __future__ import annotations

from pathlib import Path

from outpost_endpoint.config import ENGINE_TYPES, EngineConfig
from outpost_endpoint.engine.base import Engine
from outpost_endpoint.engine.process_pool import ProcessPoolEngine
from outpost_endpoint.errors import ConfigError

ENGINES: dict[str, type[Engine]] = {"process-pool": ProcessPoolEngine}


def build_engine(config: EngineConfig, run_dir: Path | None = None) -> Engine:
    """The engine ``config`` asks for, not yet started.

    ``run_dir`` is where the high-throughput engine keeps its keys, manager settings and block
    logs (the endpoint passes ``<endpoint dir>/run``; compute nodes must be able to read it).
    """
    if config.type == "process-pool":
        return ProcessPoolEngine(config.max_workers)
    if config.type == "high-throughput":
        # imported here: pyzmq and the engine's modules load only for endpoints that use it
        from outpost_endpoint.engine.high_throughput import HighThroughputEngine

        return HighThroughputEngine(config, run_dir)
    if config.type not in ENGINES:
        raise ConfigError(f"engine.type: {config.type!r} is not one of: {', '.join(ENGINE_TYPES)}")
    return ENGINES[config.type]()
