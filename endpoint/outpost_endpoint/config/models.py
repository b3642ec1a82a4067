"""``config.yaml`` as typed models: each section is a class whose fields carry their type,
default, bounds and description, so validation, the error messages and docs/CONFIGURATION.md
all come from this one declaration.

``engine.provider`` is one class per scheduler, picked by its ``type`` key: a key only one
scheduler understands is an error elsewhere (a typo-level mistake, reported as such).
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator
from pydantic_core import PydanticCustomError

from outpost.runtime.settings import choices
from outpost_endpoint.config.values import (
    Accelerators,
    AmqpUrl,
    CpuAffinity,
    FilePath,
    Fraction,
    FunctionIds,
    ServiceUrl,
    Text,
    Walltime,
)
from outpost_endpoint.engine.high_throughput import HEARTBEAT_PERIOD

#: The smallest default prefetch window (see ``EndpointConfig.prefetch_count``).
MIN_PREFETCH = 64
#: Most workers an engine counts for the prefetch window.
MAX_SLOTS = 5000
#: Bound of every count of processes, nodes or blocks: generous, and small enough that a typo
#: cannot make the endpoint plan billions of anything.
MAX_COUNT = 100_000


def conflict(field: str, message: str) -> PydanticCustomError:
    """A value that contradicts another one of its section; ``field`` is the key (relative to
    the section) the message is reported under."""
    return PydanticCustomError("conflict", message, {"field": field})


def _count(low: int, *, default: Any = None) -> Any:
    """A count of processes, nodes or blocks: at least ``low``, at most :data:`MAX_COUNT`."""
    return Field(default, ge=low, le=MAX_COUNT)


class Section(BaseModel):
    """A mapping in ``config.yaml``: unknown keys are errors (a typo such as ``max_worker``
    must not be silently ignored), values are not converted (``"4"`` is not a number), and a
    key left empty (``key:`` or ``null``) means its default."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class LauncherConfig(Section):
    """How a block's command is started on its nodes (high-throughput engine)."""

    type: Literal["simple", "single", "mpiexec", "srun", "aprun"] = "simple"
    """simple and single run one manager on the block's first node; mpiexec, srun and aprun
    start one manager per node."""
    bind_cmd: Text | None = None
    """mpiexec: the CPU binding option, e.g. --cpu-bind."""
    overrides: Text = ""
    """mpiexec, srun, aprun: extra options of the launch command."""


class BlockProviderConfig(Section):
    """Where blocks of nodes come from (high-throughput engine): the keys every scheduler
    understands."""

    type: Literal["local", "pbspro", "slurm"] = "local"
    """Which scheduler gives the blocks: local (process groups on this machine), pbspro or
    slurm."""
    account: Text | None = None
    """The allocation (project) jobs are charged to."""
    queue: Text | None = None
    """The queue (Slurm: the partition) jobs are submitted to."""
    walltime: Walltime = "00:10:00"
    """Each block's walltime, "HH:MM:SS"."""
    scheduler_options: Text = ""
    """Extra lines of the job script's header, e.g. "#PBS -l filesystems=home:eagle"."""
    worker_init: Text = ""
    """Shell commands run on each node before the manager starts (load modules, activate an
    environment)."""
    nodes_per_block: int = _count(1, default=1)
    """Nodes of one block (one scheduler job)."""
    min_blocks: int = _count(0, default=0)
    """Blocks kept even without tasks."""
    max_blocks: int = _count(0, default=1)
    """Most blocks at once."""
    cpus_per_node: int | None = _count(1)
    """Cores of one node (default: the node's own count, once the block runs)."""
    max_queued_blocks: int | None = _count(1)
    """Site limit on this endpoint's jobs waiting in the queue (Polaris: 100 per user)."""
    launcher: LauncherConfig = Field(default_factory=LauncherConfig)
    """How each block's managers are started."""

    @model_validator(mode="after")
    def _blocks_fit(self) -> BlockProviderConfig:
        if self.min_blocks > self.max_blocks:
            raise conflict(
                "min_blocks", f"{self.min_blocks} is larger than max_blocks ({self.max_blocks})"
            )
        if self.launcher.type == "srun" and self.type != "slurm":
            raise conflict(
                "launcher.type",
                f"'srun' needs provider type slurm (type is {self.type!r}); use mpiexec or simple",
            )
        return self


class LocalProviderConfig(BlockProviderConfig):
    """Blocks are process groups on this machine."""

    type: Literal["local"] = "local"


class PbsProProviderConfig(BlockProviderConfig):
    """Blocks are PBS Pro jobs."""

    type: Literal["pbspro"] = "pbspro"
    select_options: Text | None = None
    """Extra resources of each chunk of ``-l select=``, e.g. ngpus=4."""
    place: Literal["scatter", "pack", "free", "excl", "scatter:excl", "pack:excl", "free:excl"] = (
        "scatter"
    )
    """``-l place=`` (scatter: one chunk per node)."""


class SlurmProviderConfig(BlockProviderConfig):
    """Blocks are Slurm jobs."""

    type: Literal["slurm"] = "slurm"
    partition: Text | None = None
    """The partition (``queue`` is accepted as its synonym)."""
    qos: Text | None = None
    """Quality of service (``--qos``)."""
    constraint: Text | None = None
    """Node features the job needs (``--constraint``)."""
    gpus_per_node: int | None = Field(None, ge=1, le=1024)
    """``--gpus-per-node``."""
    exclusive: bool = True
    """Whole nodes per block (``--exclusive``); false on shared partitions."""


def _provider_type(data: Any) -> str:
    """The ``type`` key picks the class; without one a provider is local."""
    if isinstance(data, dict):
        return str(data.get("type") or "local")
    return str(getattr(data, "type", "local"))


ProviderConfig = Annotated[
    Annotated[LocalProviderConfig, Tag("local")]
    | Annotated[PbsProProviderConfig, Tag("pbspro")]
    | Annotated[SlurmProviderConfig, Tag("slurm")],
    Discriminator(_provider_type),
]


class EngineConfig(Section):
    """Which engine runs tasks and how big it is."""

    type: Literal["process-pool", "high-throughput"] = "process-pool"
    """process-pool: local processes (only max_workers applies); high-throughput: an
    interchange hands tasks to a manager per node of each block from the provider."""
    max_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=MAX_COUNT)
    """Workers of the process-pool engine (default: one per CPU core)."""
    max_workers_per_node: int | None = _count(1)
    """Workers per node (default: one per accelerator if any, else one per CPU core)."""
    available_accelerators: Accelerators = Field(default_factory=list)
    """An integer N (devices "0".."N-1") or a list of device ids; one worker per device."""
    cpu_affinity: CpuAffinity = "none"
    """none | block | alternating | block-reverse | list:0-3:4-7 (cores per worker)."""
    prefetch_capacity: int = _count(0, default=0)
    """Tasks sent to a manager beyond its free workers."""
    accelerator_variable: Literal[
        "CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "ZE_AFFINITY_MASK"
    ] = "CUDA_VISIBLE_DEVICES"
    """Which variable pins a worker to its device: CUDA_VISIBLE_DEVICES (NVIDIA),
    ROCR_VISIBLE_DEVICES (AMD) or ZE_AFFINITY_MASK (Intel)."""
    max_retries: int = Field(0, ge=0, le=1000)
    """Times a task lost with its worker, manager or block is sent again before it fails."""
    heartbeat_period: float = Field(HEARTBEAT_PERIOD, ge=0.05)
    """Seconds between heartbeats each way between the interchange and the managers."""
    heartbeat_threshold: float = Field(30.0, ge=0.1)
    """Seconds of silence after which a manager (or, seen from a manager, the interchange) is
    lost."""
    drain_period: float | None = Field(None, ge=0)
    """Seconds before a block's walltime ends in which its managers take no task without a
    walltime that fits (default: 2 x heartbeat_threshold, at most a quarter of the
    walltime)."""
    max_idletime: float = Field(120.0, ge=0)
    """Seconds a block may sit without any task before it is released (above min_blocks)."""
    parallelism: Fraction = 1.0
    """Fraction of outstanding tasks to ask worker slots for (1 = one slot per task)."""
    interchange_address: Text | None = None
    """Host name the managers connect to (default: this host's name; 127.0.0.1 for local
    blocks)."""
    mpi_launcher: Text | None = None
    """Launcher template for MPIFunction tasks (default: the one detected on the node: hydra
    ``-f``, PALS ``--hostfile``, srun ``--nodelist``)."""
    provider: ProviderConfig = Field(default_factory=LocalProviderConfig)
    """Where blocks of nodes come from (high-throughput engine)."""

    @model_validator(mode="after")
    def _threshold_spans_periods(self) -> EngineConfig:
        if self.heartbeat_threshold <= self.heartbeat_period:
            raise conflict(
                "heartbeat_threshold",
                f"{self.heartbeat_threshold} must be larger than heartbeat_period "
                f"({self.heartbeat_period}); use several periods, e.g. 30 with a period of 2",
            )
        return self

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
        return min(per_node * nodes, MAX_SLOTS)


class EndpointConfig(Section):
    """One endpoint's ``config.yaml``."""

    service_url: ServiceUrl | None = None
    """The Outpost service this endpoint registers with (default: $OUTPOST_URL, then the "url"
    in ~/.outpost/credentials.json)."""
    amqp_url: AmqpUrl | None = None
    """Overrides the RabbitMQ URL the service hands out at registration (e.g. through a
    tunnel)."""
    amqp_urls: list[AmqpUrl] | None = None
    """Overrides the RabbitMQ cluster's node URLs the service hands out, tried in order (the
    endpoint moves to a surviving node when its node dies); takes precedence over amqp_url."""
    service_ca_file: FilePath | None = None
    """CA bundle (PEM) trusted for HTTPS to the service (default: $OUTPOST_CA_BUNDLE, then
    $REQUESTS_CA_BUNDLE, then the bundled CAs)."""
    amqp_ca_file: FilePath | None = None
    """For amqps://: the CA bundle that signed RabbitMQ's certificate (default: the system
    store)."""
    amqp_cert_file: FilePath | None = None
    """For amqps://: a client certificate (PEM), for brokers that verify peers."""
    amqp_key_file: FilePath | None = None
    """... and its key."""
    heartbeat_interval: float | None = Field(None, ge=0.1)
    """Seconds between heartbeats to the service (default: what the service asks for at
    registration)."""
    prefetch: int | None = Field(None, ge=1, le=65535)
    """Task messages RabbitMQ hands this endpoint before it has answered any (default: 2 x
    the engine's workers + 2, at least 64)."""
    shutdown_grace: float = Field(30.0, ge=0)
    """Seconds that ``stop`` lets running tasks finish; tasks still running are put back in
    the queue."""
    engine: EngineConfig = Field(default_factory=EngineConfig)
    """Which engine runs tasks."""
    allowed_functions: FunctionIds | None = None
    """The only function ids this endpoint runs (default: any); enforced by the daemon itself,
    on top of the service's allow-list (docs/SECURITY.md)."""

    @property
    def prefetch_count(self) -> int:
        """The AMQP prefetch window: every worker busy plus a few queued behind them, and at
        least :data:`MIN_PREFETCH` -- the tasks of one window move per broker round trip, so
        a window of a few tasks caps short tasks at a few hundred a second.  (Tasks taken
        early wait in the journal and the engine, durable and cancellable.)"""
        if self.prefetch is not None:
            return self.prefetch
        return max(2 * self.engine.slots + 2, MIN_PREFETCH)


#: ``engine.type`` values.
ENGINE_TYPES = choices(EngineConfig.model_fields["type"])
