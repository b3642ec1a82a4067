"""The provider interface: how the high-throughput engine gets and releases blocks of nodes.

A *block* is one batch job (or, for the local provider, one local process group) that holds
``nodes_per_block`` nodes for up to ``walltime``; the engine starts one manager per node inside
it through a :class:`~outpost_endpoint.launchers.base.Launcher`.  Providers are template + submit
/ status / cancel, like Parsl's, with two promises Parsl does not make:

* a block's state is never guessed: a failed or garbled scheduler query yields ``UNKNOWN`` (the
  engine keeps the last known state and retries), and a job the scheduler no longer knows is
  ``LOST``, not ``RUNNING``;
* scheduler commands run with a timeout, their output is logged on failure, and transient
  failures are retried with backoff by the provider itself.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field


class BlockState(str, enum.Enum):
    """Where a block is in its life, mapped from each scheduler's own states."""

    PENDING = "pending"  # queued, held or waiting in the scheduler
    RUNNING = "running"
    COMPLETED = "completed"  # ended by itself with exit status 0
    FAILED = "failed"  # ended with a non-zero exit status or was killed by the scheduler
    CANCELLED = "cancelled"  # ended because we (or an operator) cancelled it
    LOST = "lost"  # the scheduler no longer knows the job and no final state was found
    UNKNOWN = "unknown"  # the scheduler could not be asked this time; try again later

    @property
    def is_terminal(self) -> bool:
        return self in (
            BlockState.COMPLETED,
            BlockState.FAILED,
            BlockState.CANCELLED,
            BlockState.LOST,
        )


@dataclass(frozen=True)
class BlockStatus:
    """What the scheduler said about one job."""

    state: BlockState
    exit_code: int | None = None
    nodes: tuple[str, ...] = ()
    message: str = ""
    raw: dict[str, str] = field(default_factory=dict)


class Provider(abc.ABC):
    """Gets blocks from a resource manager.  Implementations are thread-safe."""

    #: short name used in logs and job names, e.g. "local", "pbspro", "slurm"
    label: str = "provider"
    #: the ``engine.provider`` fields of config.yaml the constructor takes, besides those every
    #: provider takes (see :mod:`~outpost_endpoint.providers.registry`)
    config_fields: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        nodes_per_block: int = 1,
        min_blocks: int = 0,
        max_blocks: int = 1,
        walltime_seconds: float = 600.0,
        max_queued_blocks: int | None = None,
    ) -> None:
        self.nodes_per_block = nodes_per_block
        self.min_blocks = min_blocks
        self.max_blocks = max_blocks
        self.walltime_seconds = walltime_seconds
        #: site limit on jobs waiting in the queue (Polaris: 100 per user); None = no limit
        self.max_queued_blocks = max_queued_blocks

    @abc.abstractmethod
    def submit(self, command: str, block_id: str) -> str:
        """Start a block that runs ``command`` (already wrapped by the launcher) on its nodes;
        returns the scheduler's job id.  Raises ``ProviderError`` with the scheduler's output
        if the submission failed."""

    @abc.abstractmethod
    def status(self, job_ids: Sequence[str]) -> dict[str, BlockStatus]:
        """The status of each job in ``job_ids`` (every id gets an answer, ``UNKNOWN`` when the
        scheduler could not be asked)."""

    @abc.abstractmethod
    def cancel(self, job_ids: Sequence[str]) -> None:
        """Ask the scheduler to end these jobs; returns once the request was accepted."""

    def job_name_for(self, block_id: str) -> str | None:
        """The scheduler's name for ``block_id``'s job, unique to this provider (this run);
        None where jobs have no names to look them up by (the local provider)."""
        return None

    def find_jobs(self, job_name: str) -> list[str]:
        """Ids of unfinished jobs named ``job_name`` ([] if none, or if it cannot be said)."""
        return []

    def cancel_leftovers(self, job_ids: Sequence[str]) -> None:
        """End jobs a previous run of this endpoint submitted and could not release (its
        daemon was killed); see :mod:`~outpost_endpoint.engine.high_throughput.block_records`.
        Jobs that already ended are fine."""
        self.cancel(job_ids)

    def close(self) -> None:  # noqa: B027 -- optional hook
        """Release what the provider holds (threads, temporary files)."""
