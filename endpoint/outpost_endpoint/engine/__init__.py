"""Engines run tasks: :class:`Engine` is the interface, ``build_engine`` picks one from config."""

from outpost_endpoint.engine.base import Engine
from outpost_endpoint.engine.process_pool import ProcessPoolEngine
from outpost_endpoint.engine.registry import ENGINES, build_engine

__all__ = ["ENGINES", "Engine", "ProcessPoolEngine", "build_engine"]
