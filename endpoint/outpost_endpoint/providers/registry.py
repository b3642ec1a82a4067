"""``config.yaml``'s ``engine.provider`` -> a Provider.

Every batch provider module is imported by name only when the configuration asks for it, so a
local endpoint never loads scheduler code (and the local provider, written with the engine,
stays where it is).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from outpost_endpoint.config import ProviderConfig
from outpost_endpoint.errors import ConfigError
from outpost_endpoint.providers.base import Provider
from outpost_endpoint.providers.batch import BatchProvider, walltime_seconds
from outpost_endpoint.providers.scheduler_command import SchedulerCommands

#: The config.yaml fields every provider takes; each class adds its own ``config_fields``.
_COMMON_FIELDS = ("worker_init", "nodes_per_block", "min_blocks", "max_blocks")
#: provider type -> (module, class)
PROVIDERS: dict[str, tuple[str, str]] = {
    "local": ("outpost_endpoint.providers.local", "LocalProvider"),
    "pbspro": ("outpost_endpoint.providers.pbspro", "PBSProProvider"),
    "slurm": ("outpost_endpoint.providers.slurm", "SlurmProvider"),
}


def provider_from_config(
    config: ProviderConfig, run_dir: Path, commands: SchedulerCommands | None = None
) -> Provider:
    """Build the provider ``config`` names, with every field it has; ``commands`` lets the
    caller set timeouts (and tests an environment pointing at an emulator)."""
    if config.type not in PROVIDERS:
        raise ConfigError(
            f"engine.provider.type: {config.type!r} is not one of: {', '.join(PROVIDERS)}"
        )
    module_name, class_name = PROVIDERS[config.type]
    cls: Any = getattr(importlib.import_module(module_name), class_name)  # a Provider class
    settings: dict[str, Any] = {
        name: getattr(config, name) for name in (*_COMMON_FIELDS, *cls.config_fields)
    }
    if issubclass(cls, BatchProvider):
        provider: Provider = cls(run_dir=run_dir, commands=commands, **settings)
    else:  # the local provider: processes on this host, only a time limit to keep
        provider = cls(
            run_dir=run_dir, walltime_seconds=float(walltime_seconds(config.walltime)), **settings
        )
    return provider
