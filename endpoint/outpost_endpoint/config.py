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

from outpost_endpoint.engine.high_throughput.wire import HEARTBEAT_PERIOD
from outpost_endpoint.errors import ConfigError

ENGINE_TYPES = ("process-pool", "high-throughput")
PROVIDER_TYPES = ("local", "pbspro", "slurm")
LAUNCHER_TYPES = ("simple", "single", "mpiexec", "srun", "aprun")
#: provider keys that only one scheduler understands (a typo-level mistake to set elsewhere)
SCHEDULER_ONLY_KEYS = {
    "select_options": "pbspro",
    "place": "pbspro",
    "partition": "slurm",
    "qos": "slurm",
    "constraint": "slurm",
    "gpus_per_node": "slurm",
    "exclusive": "slurm",
}
PBS_PLACES = ("scatter", "pack", "free", "excl", "scatter:excl", "pack:excl", "free:excl")
CPU_AFFINITIES = ("none", "block", "alternating", "block-reverse", "list:...")
ACCELERATOR_VARIABLES = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "ZE_AFFINITY_MASK")
_CORE_SET = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")
_WALLTIME = re.compile(r"\d+:[0-5]\d:[0-5]\d")
_FUNCTION_ID = re.compile(r"[0-9a-f]{64}")


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
    #: PBS Pro ``-l place=`` (one chunk per node by default)
    place: str = "scatter"
    #: Slurm partition (``queue`` is accepted as its synonym) and other Slurm-only options
    partition: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus_per_node: int | None = None
    #: Slurm: whole nodes per block (``--exclusive``); false on shared partitions
    exclusive: bool = True
    #: site limit on this endpoint's jobs waiting in the queue (Polaris: 100 per user)
    max_queued_blocks: int | None = None
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
    #: which variable pins a worker to its device: CUDA_VISIBLE_DEVICES (NVIDIA),
    #: ROCR_VISIBLE_DEVICES (AMD) or ZE_AFFINITY_MASK (Intel)
    accelerator_variable: str = "CUDA_VISIBLE_DEVICES"
    #: times a task lost with its worker, manager or block is sent again before it fails
    max_retries: int = 0
    #: seconds between heartbeats each way between the interchange and the managers
    heartbeat_period: float = HEARTBEAT_PERIOD
    #: seconds of silence after which a manager (or, seen from a manager, the interchange) is lost
    heartbeat_threshold: float = 30.0
    #: seconds before a block's walltime ends in which its managers take no task without a
    #: walltime that fits (None: 2 x heartbeat_threshold, at most a quarter of the walltime)
    drain_period: float | None = None
    #: seconds a block may sit without any task before it is released (above min_blocks)
    max_idletime: float = 120.0
    #: fraction of outstanding tasks to ask worker slots for (1 = one slot per task)
    parallelism: float = 1.0
    #: host name the managers connect to (default: this host's name; 127.0.0.1 for local blocks)
    interchange_address: str | None = None
    #: launcher template for MPIFunction tasks (see outpost.shell); default: the one detected on
    #: the node (launchers.mpi_tasks: hydra ``-f``, PALS ``--hostfile``, srun ``--nodelist``)
    mpi_launcher: str | None = None
    provider: ProviderConfig = field(default_factory=ProviderConfig)

    @property
    def slots(self) -> int:
        """Workers the engine can have at most (for the AMQP prefetch window): for the
        high-throughput engine every node of max_blocks blocks, each with one worker per
        accelerator, or max_workers_per_node, or cpus_per_node (else max_workers)."""
        if self.type != "high-throughput":
            return self.max_workers
        per_node = (
            len(self.available_accelerators)
            or self.max_workers_per_node
            or self.provider.cpus_per_node
            or self.max_workers
        )
        if self.available_accelerators and self.max_workers_per_node:
            per_node = min(per_node, self.max_workers_per_node)
        nodes = max(self.provider.max_blocks, 1) * self.provider.nodes_per_block
        return min(per_node * nodes, 5000)


#: The smallest default prefetch window (see ``EndpointConfig.prefetch_count``).
MIN_PREFETCH = 64


@dataclass
class EndpointConfig:
    """One endpoint's ``config.yaml``."""

    service_url: str | None = None
    amqp_url: str | None = None
    #: CA bundle (PEM) trusted for HTTPS to the service; unset: ``OUTPOST_CA_BUNDLE``, then
    #: ``REQUESTS_CA_BUNDLE``, then the bundled CAs.
    service_ca_file: str | None = None
    #: For ``amqps://``: CA bundle that signed RabbitMQ's certificate (unset: the system
    #: store), and a client certificate + key for brokers that verify peers.
    amqp_ca_file: str | None = None
    amqp_cert_file: str | None = None
    amqp_key_file: str | None = None
    heartbeat_interval: float | None = None
    prefetch: int | None = None
    shutdown_grace: float = 30.0
    engine: EngineConfig = field(default_factory=EngineConfig)
    #: The only function ids this endpoint runs (None: any); enforced by the daemon itself,
    #: on top of the service's allow-list (docs/SECURITY.md).
    allowed_functions: list[str] | None = None

    @property
    def prefetch_count(self) -> int:
        """The AMQP prefetch window: every worker busy plus a few queued behind them, and at
        least :data:`MIN_PREFETCH` -- the tasks of one window move per broker round trip, so
        a window of a few tasks caps short tasks at a few hundred a second.  (Tasks taken
        early wait in the journal and the engine, durable and cancellable.)"""
        if self.prefetch is not None:
            return self.prefetch
        return max(2 * self.engine.slots + 2, MIN_PREFETCH)


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
            "service_ca_file",
            "amqp_ca_file",
            "amqp_cert_file",
            "amqp_key_file",
            "heartbeat_interval",
            "prefetch",
            "shutdown_grace",
            "engine",
            "allowed_functions",
        )
        data = self.section(data, "(top level)", allowed)
        return EndpointConfig(
            service_url=self.value(data, "service_url", "", None, _url(("http://", "https://"))),
            amqp_url=self.value(data, "amqp_url", "", None, _url(("amqp://", "amqps://"))),
            service_ca_file=self.value(data, "service_ca_file", "", None, _file_path),
            amqp_ca_file=self.value(data, "amqp_ca_file", "", None, _file_path),
            amqp_cert_file=self.value(data, "amqp_cert_file", "", None, _file_path),
            amqp_key_file=self.value(data, "amqp_key_file", "", None, _file_path),
            heartbeat_interval=self.value(data, "heartbeat_interval", "", None, _number(0.1)),
            prefetch=self.value(data, "prefetch", "", None, _integer(1)),
            shutdown_grace=self.value(data, "shutdown_grace", "", 30.0, _number(0)),
            engine=self.engine(data.get("engine")),
            allowed_functions=self.value(data, "allowed_functions", "", None, _function_ids),
        )

    def engine(self, data: Any) -> EngineConfig:
        where = "engine."
        data = self.section(data, "engine", tuple(f.name for f in _fields(EngineConfig)))
        default = EngineConfig()
        config = EngineConfig(
            type=self.value(data, "type", where, default.type, _choice(ENGINE_TYPES)),
            max_workers=self.value(data, "max_workers", where, default.max_workers, _integer(1)),
            max_workers_per_node=self.value(data, "max_workers_per_node", where, None, _integer(1)),
            available_accelerators=self.value(
                data, "available_accelerators", where, [], _accelerators
            ),
            cpu_affinity=self.value(data, "cpu_affinity", where, "none", _affinity),
            prefetch_capacity=self.value(data, "prefetch_capacity", where, 0, _integer(0)),
            accelerator_variable=self.value(
                data,
                "accelerator_variable",
                where,
                default.accelerator_variable,
                _choice(ACCELERATOR_VARIABLES),
            ),
            max_retries=self.value(data, "max_retries", where, 0, _integer(0)),
            heartbeat_period=self.value(
                data, "heartbeat_period", where, HEARTBEAT_PERIOD, _number(0.05)
            ),
            heartbeat_threshold=self.value(data, "heartbeat_threshold", where, 30.0, _number(0.1)),
            drain_period=self.value(data, "drain_period", where, None, _number(0)),
            max_idletime=self.value(data, "max_idletime", where, 120.0, _number(0)),
            parallelism=self.value(data, "parallelism", where, 1.0, _fraction),
            interchange_address=self.value(data, "interchange_address", where, None, _text),
            mpi_launcher=self.value(data, "mpi_launcher", where, None, _text),
            provider=self.provider(data.get("provider")),
        )
        if config.heartbeat_threshold <= config.heartbeat_period:
            self.fail(
                "engine.heartbeat_threshold",
                f"{config.heartbeat_threshold} must be larger than heartbeat_period "
                f"({config.heartbeat_period}); use several periods, e.g. 30 with a period of 2",
            )
        return config

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
            place=self.value(data, "place", where, d.place, _choice(PBS_PLACES)),
            partition=self.value(data, "partition", where, None, _text),
            qos=self.value(data, "qos", where, None, _text),
            constraint=self.value(data, "constraint", where, None, _text),
            gpus_per_node=self.value(data, "gpus_per_node", where, None, _integer(1)),
            exclusive=self.value(data, "exclusive", where, True, _boolean),
            max_queued_blocks=self.value(data, "max_queued_blocks", where, None, _integer(1)),
            launcher=self.launcher(data.get("launcher")),
        )
        if config.min_blocks > config.max_blocks:
            self.fail(
                "engine.provider.min_blocks",
                f"{config.min_blocks} is larger than max_blocks ({config.max_blocks})",
            )
        for key, scheduler in SCHEDULER_ONLY_KEYS.items():
            if data.get(key) is not None and config.type != scheduler:
                self.fail(
                    f"engine.provider.{key}",
                    f"is only used by provider type {scheduler} (type is {config.type!r}); "
                    f"remove it or set type: {scheduler}",
                )
        if config.launcher.type == "srun" and config.type != "slurm":
            self.fail(
                "engine.provider.launcher.type",
                f"'srun' needs provider type slurm (type is {config.type!r}); use mpiexec or "
                "simple",
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


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("is not true or false")
    return value


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError("is not text; write it as a (quoted) string")
    return str(value)


def _file_path(value: Any) -> str:
    """An absolute path (``~`` expanded): the daemon's working folder is not the user's."""
    path = os.path.expanduser(_text(value))
    if not os.path.isabs(path):
        raise ValueError("is not an absolute path; write /path/to/file.pem or ~/file.pem")
    return path


def _url(schemes: tuple[str, ...]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if not isinstance(value, str) or not value.startswith(schemes):
            raise ValueError(f"is not a URL starting with one of: {', '.join(schemes)}")
        return value.rstrip("/") if value.startswith("http") else value

    return convert


def _walltime(value: Any) -> str:
    """``"0:10:00"`` (as in Parsl configs) is accepted and written back as ``"00:10:00"``."""
    if not isinstance(value, str) or not _WALLTIME.fullmatch(value):
        raise ValueError('is not a walltime; write it as a quoted "HH:MM:SS", e.g. "01:00:00"')
    hours, minutes, seconds = value.split(":")
    return f"{int(hours):02d}:{minutes}:{seconds}"


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
    if isinstance(value, str) and value in CPU_AFFINITIES[:-1]:
        return value
    if isinstance(value, str) and value.startswith("list:"):
        cores = value[len("list:") :]
        if cores and all(_CORE_SET.fullmatch(part) for part in cores.split(":")):
            return value
        raise ValueError(
            "is not a core list; write list:CORES[:CORES...] with ':' between workers and ',' "
            "between cores or ranges, e.g. list:0-3,8:4-7"
        )
    raise ValueError(f"is not one of: {', '.join(CPU_AFFINITIES)}")


def _function_ids(value: Any) -> list[str]:
    """A non-empty list of function ids (sha256 hex, as ``outpost`` registers them)."""
    if not isinstance(value, list):
        raise ValueError("is not a list; write a YAML list of function ids (sha256 hex)")
    if not value:
        raise ValueError(
            "is empty, which would refuse every task; list the function ids to run, or remove "
            "the key to run any function"
        )
    bad = [v for v in value if not isinstance(v, str) or not _FUNCTION_ID.fullmatch(v)]
    if bad:
        raise ValueError(
            f"has entries that are not function ids: {', '.join(repr(b) for b in bad[:3])}; a "
            "function id is the 64 lowercase hex digits `outpost` prints at registration"
        )
    return list(dict.fromkeys(value))


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError("is not a fraction; use a number from 0 to 1 (1 = a slot per task)")
    return float(value)
