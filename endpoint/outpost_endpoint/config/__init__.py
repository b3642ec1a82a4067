"""An endpoint's ``config.yaml``: the typed models of its sections (:mod:`.models`), the kinds
of value they hold (:mod:`.values`), reading the file (:mod:`.loading`) and the error lines
(:mod:`.messages`)."""

from outpost_endpoint.config.loading import load_config, parse_config
from outpost_endpoint.config.models import (
    ENGINE_TYPES,
    MIN_PREFETCH,
    BlockProviderConfig,
    EndpointConfig,
    EngineConfig,
    LauncherConfig,
    LocalProviderConfig,
    PbsProProviderConfig,
    ProviderConfig,
    SlurmProviderConfig,
)

__all__ = [
    "ENGINE_TYPES",
    "MIN_PREFETCH",
    "BlockProviderConfig",
    "EndpointConfig",
    "EngineConfig",
    "LauncherConfig",
    "LocalProviderConfig",
    "PbsProProviderConfig",
    "ProviderConfig",
    "SlurmProviderConfig",
    "load_config",
    "parse_config",
]
