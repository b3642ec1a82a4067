"""``config.yaml``'s ``engine.provider.launcher`` -> a Launcher (scheduler launchers imported
only when named)."""

from __future__ import annotations

import importlib

from outpost_endpoint.config import LauncherConfig
from outpost_endpoint.errors import ConfigError
from outpost_endpoint.launchers.base import Launcher

#: launcher type -> (module, class)
LAUNCHERS: dict[str, tuple[str, str]] = {
    "simple": ("outpost_endpoint.launchers.simple", "SimpleLauncher"),
    "single": ("outpost_endpoint.launchers.simple", "SingleNodeLauncher"),
    "mpiexec": ("outpost_endpoint.launchers.mpiexec", "MpiExecLauncher"),
    "srun": ("outpost_endpoint.launchers.srun", "SrunLauncher"),
    "aprun": ("outpost_endpoint.launchers.aprun", "AprunLauncher"),
}


def launcher_from_config(config: LauncherConfig) -> Launcher:
    """Build the launcher ``config`` names; ConfigError naming the field if it cannot."""
    if config.type not in LAUNCHERS:
        raise ConfigError(
            f"engine.provider.launcher.type: {config.type!r} is not one of: {', '.join(LAUNCHERS)}"
        )
    module_name, class_name = LAUNCHERS[config.type]
    cls = getattr(importlib.import_module(module_name), class_name)
    if config.type == "mpiexec":
        launcher: Launcher = cls(bind_cmd=config.bind_cmd, overrides=config.overrides)
    elif config.type in ("srun", "aprun"):
        launcher = cls(overrides=config.overrides)
    else:
        launcher = cls()
    return launcher
