"""Reading ``config.yaml``: every problem is reported at once, one line each (see
:mod:`.messages`), in a :class:`~outpost_endpoint.errors.ConfigError`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from outpost_endpoint.config.messages import explain
from outpost_endpoint.config.models import EndpointConfig
from outpost_endpoint.errors import ConfigError


def load_config(path: Path) -> EndpointConfig:
    """Read and validate ``path``; raise :class:`ConfigError` listing every problem."""
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{path} does not exist; create it with `outpost-endpoint configure`"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return parse_config(data if data is not None else {}, source=str(path))


def parse_config(data: Any, source: str = "config.yaml") -> EndpointConfig:
    """Validate a mapping (as read from YAML) into an :class:`EndpointConfig`."""
    try:
        return EndpointConfig.model_validate(data)
    except ValidationError as exc:
        problems = explain(exc, EndpointConfig)
    raise ConfigError(f"invalid endpoint configuration in {source}:\n  " + "\n  ".join(problems))
