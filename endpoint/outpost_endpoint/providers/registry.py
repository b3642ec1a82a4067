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
from outpost_endpoint.providers.scheduler_command import SchedulerCommands

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
    cls = getattr(importlib.import_module(module_name), class_name)
    common: dict[str, Any] = {
        "run_dir": run_dir,
        "worker_init": config.worker_init,
        "nodes_per_block": config.nodes_per_block,
        "min_blocks": config.min_blocks,
        "max_blocks": config.max_blocks,
    }
    if config.type == "local":
        from outpost_endpoint.providers.batch import walltime_seconds

        provider: Provider = cls(
            walltime_seconds=float(walltime_seconds(config.walltime)), **common
        )
        return provider
    common.update(
        account=config.account,
        queue=config.queue,
        walltime=config.walltime,
        scheduler_options=config.scheduler_options,
        cpus_per_node=config.cpus_per_node,
        max_queued_blocks=config.max_queued_blocks,
        commands=commands,
    )
    if config.type == "pbspro":
        common.update(select_options=config.select_options, place=config.place)
    else:
        common.update(
            partition=config.partition,
            qos=config.qos,
            constraint=config.constraint,
            gpus_per_node=config.gpus_per_node,
            exclusive=config.exclusive,
        )
    provider = cls(**common)
    return provider
