"""``config.yaml``: dataclasses, loading and validation.

Validation collects every problem and reports them together; each line names the field (with its
dotted path), the bad value and what is allowed, e.g.
``engine.type: 'foo' is not one of: process-pool, high-throughput``.  Unknown keys are errors too
(a typo such as ``max_worker`` must not be silently ignored).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from outpost_endpoint.errors import ConfigError

ENGINE_TYPES = ("process-pool", "high-throughput")
PROVIDER_TYPES = ("local", "pbspro", "slurm")
LAUNCHER_TYPES = ("simple", "mpiexec", "srun")
CPU_AFFINITIES = ("none", "block", "alternating", "block-reverse", "list:...")
_WALLTIME = re.compile(r"^\d+:[0-5]\d:[0-5]\d$")


@dataclass
class LauncherConfig:
    """How a block's command is started on its nodes (high-throughput engine)."""

    type: str = "simple"
    bind_cmd: str | None = None
    overrides: str = ""


@dataclass
class ProviderConfig:
    """Where blocks of nodes come from (high-throughput engine)."""

    type: str = "local"
    account: str | None = None
    queue: str | None = None
    walltime: str = "00:10:00"
    select_options: str | None = None
    scheduler_options: str = ""
    worker_init: str = ""
    nodes_per_block: int = 1
    min_blocks: int = 0
    max_blocks: int = 1
    cpus_per_node: int | None = None
    launcher: LauncherConfig = field(default_factory=LauncherConfig)


@dataclass
class EngineConfig:
    """Which engine runs tasks and how big it is."""

    type: str = "process-pool"
    max_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_workers_per_node: int | None = None
    available_accelerators: list[str] = field(default_factory=list)
    cpu_affinity: str = "none"
    prefetch_capacity: int = 0
    provider: ProviderConfig = field(default_factory=ProviderConfig)


@dataclass
class EndpointConfig:
    """One endpoint's ``config.yaml``."""

    service_url: str | None = None
    amqp_url: str | None = None
    heartbeat_interval: float | None = None
    prefetch: int | None = None
    shutdown_grace: float = 30.0
    engine: EngineConfig = field(default_factory=EngineConfig)

    @property
    def prefetch_count(self) -> int:
        """The AMQP prefetch window: every worker busy plus a few queued behind them."""
        if self.prefetch is not None:
            return self.prefetch
        return 2 * self.engine.max_workers + 2


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
    checker = _Checker()
    config = checker.endpoint(data)
    if checker.errors:
        raise ConfigError(
            f"invalid endpoint configuration in {source}:\n  " + "\n  ".join(checker.errors)
        )
    return config


class _Checker:
    """Walks the mapping section by section, converting values and collecting errors."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")

    def section(self, data: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.fail(where, f"must be a mapping of keys to values, got {data!r}")
            return {}
        for key in data:
            if key not in allowed:
                self.fail(
                    f"{where}.{key}" if where != "(top level)" else str(key),
                    f"unknown key; allowed keys: {', '.join(allowed)}",
                )
        return data

    def value(
        self, data: dict[str, Any], key: str, where: str, default: Any, convert: Callable[..., Any]
    ) -> Any:
        if key not in data or data[key] is None:
            return default
        try:
            return convert(data[key])
        except ValueError as exc:
            self.fail(f"{where}{key}", f"{data[key]!r} {exc}")
            return default

    def endpoint(self, data: Any) -> EndpointConfig:
        allowed = (
            "service_url",
            "amqp_url",
            "heartbeat_interval",
            "prefetch",
            "shutdown_grace",
            "engine",
        )
        data = self.section(data, "(top level)", allowed)
        return EndpointConfig(
            service_url=self.value(data, "service_url", "", None, _url(("http://", "https://"))),
            amqp_url=self.value(data, "amqp_url", "", None, _url(("amqp://", "amqps://"))),
            heartbeat_interval=self.value(data, "heartbeat_interval", "", None, _number(0.1)),
            prefetch=self.value(data, "prefetch", "", None, _integer(1)),
            shutdown_grace=self.value(data, "shutdown_grace", "", 30.0, _number(0)),
            engine=self.engine(data.get("engine")),
        )

    def engine(self, data: Any) -> EngineConfig:
        where = "engine."
        data = self.section(data, "engine", tuple(f.name for f in _fields(EngineConfig)))
        default = EngineConfig()
        return EngineConfig(
            type=self.value(data, "type", where, default.type, _choice(ENGINE_TYPES)),
            max_workers=self.value(data, "max_workers", where, default.max_workers, _integer(1)),
            max_workers_per_node=self.value(data, "max_workers_per_node", where, None, _integer(1)),
            available_accelerators=self.value(
                data, "available_accelerators", where, [], _accelerators
            ),
            cpu_affinity=self.value(data, "cpu_affinity", where, "none", _affinity),
            prefetch_capacity=self.value(data, "prefetch_capacity", where, 0, _integer(0)),
            provider=self.provider(data.get("provider")),
        )

    def provider(self, data: Any) -> ProviderConfig:
        where = "engine.provider."
        data = self.section(data, "engine.provider", tuple(f.name for f in _fields(ProviderConfig)))
        d = ProviderConfig()
        config = ProviderConfig(
            type=self.value(data, "type", where, d.type, _choice(PROVIDER_TYPES)),
            account=self.value(data, "account", where, None, _text),
            queue=self.value(data, "queue", where, None, _text),
            walltime=self.value(data, "walltime", where, d.walltime, _walltime),
            select_options=self.value(data, "select_options", where, None, _text),
            scheduler_options=self.value(data, "scheduler_options", where, "", _text),
            worker_init=self.value(data, "worker_init", where, "", _text),
            nodes_per_block=self.value(data, "nodes_per_block", where, 1, _integer(1)),
            min_blocks=self.value(data, "min_blocks", where, 0, _integer(0)),
            max_blocks=self.value(data, "max_blocks", where, 1, _integer(0)),
            cpus_per_node=self.value(data, "cpus_per_node", where, None, _integer(1)),
            launcher=self.launcher(data.get("launcher")),
        )
        if config.min_blocks > config.max_blocks:
            self.fail(
                "engine.provider.min_blocks",
                f"{config.min_blocks} is larger than max_blocks ({config.max_blocks})",
            )
        return config

    def launcher(self, data: Any) -> LauncherConfig:
        where = "engine.provider.launcher."
        allowed = tuple(f.name for f in _fields(LauncherConfig))
        data = self.section(data, "engine.provider.launcher", allowed)
        return LauncherConfig(
            type=self.value(data, "type", where, "simple", _choice(LAUNCHER_TYPES)),
            bind_cmd=self.value(data, "bind_cmd", where, None, _text),
            overrides=self.value(data, "overrides", where, "", _text),
        )


def _fields(cls: type) -> tuple[Any, ...]:
    return dataclasses.fields(cls)


# Converters: return the converted value or raise ValueError with the tail of the message
# (the checker prefixes the field and the bad value).


def _choice(allowed: tuple[str, ...]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"is not one of: {', '.join(allowed)}")
        return str(value)

    return convert


def _integer(minimum: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"is not an integer; use a whole number >= {minimum}")
        if value < minimum:
            raise ValueError(f"is too small; use a whole number >= {minimum}")
        return value

    return convert


def _number(minimum: float) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"is not a number; use a number of seconds >= {minimum}")
        if value < minimum:
            raise ValueError(f"is too small; use a number of seconds >= {minimum}")
        return float(value)

    return convert


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError("is not text; write it as a (quoted) string")
    return str(value)


def _url(schemes: tuple[str, ...]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if not isinstance(value, str) or not value.startswith(schemes):
            raise ValueError(f"is not a URL starting with one of: {', '.join(schemes)}")
        return value.rstrip("/") if value.startswith("http") else value

    return convert


def _walltime(value: Any) -> str:
    if not isinstance(value, str) or not _WALLTIME.match(value):
        raise ValueError('is not a walltime; write it as a quoted "HH:MM:SS", e.g. "01:00:00"')
    return value


def _accelerators(value: Any) -> list[str]:
    if isinstance(value, bool):
        raise ValueError("is not an accelerator count or list; use an integer N or a list of ids")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("is negative; use an integer N >= 0 or a list of device ids")
        return [str(i) for i in range(value)]
    if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
        return [str(v) for v in value]
    raise ValueError("is not an accelerator count or list; use an integer N or a list of ids")


def _affinity(value: Any) -> str:
    if isinstance(value, str) and (value in CPU_AFFINITIES[:-1] or value.startswith("list:")):
        return value
    raise ValueError(f"is not one of: {', '.join(CPU_AFFINITIES)}")
