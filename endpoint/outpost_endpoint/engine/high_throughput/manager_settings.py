"""``manager.json``: what the engine tells every node's manager, written once per start into
the run directory (compute nodes read it there, over the shared file system).

One model for both sides, so a setting is named once: the engine fills it from its
``config.yaml`` section, the manager reads it back.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from outpost_endpoint.config import EngineConfig

#: The file's name in the run directory.
MANAGER_SETTINGS = "manager.json"


class ManagerSettings(BaseModel):
    """The part of the engine's configuration a manager needs, plus what only the engine
    knows (the blocks' walltime, the payload limit)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_workers_per_node: int | None
    available_accelerators: list[str]
    cpu_affinity: str
    accelerator_variable: str
    heartbeat_period: float
    heartbeat_threshold: float
    #: seconds the block lives; None: until the manager is stopped
    walltime_seconds: float | None
    #: largest task payload a worker accepts, in bytes; None: no limit
    payload_limit: int | None
    #: launcher template for MPI tasks; None: the one detected on the node
    mpi_launcher: str | None

    @classmethod
    def of_engine(
        cls, config: EngineConfig, walltime_seconds: float | None, payload_limit: int | None
    ) -> ManagerSettings:
        """The settings of ``config`` a manager shares (they keep their ``config.yaml``
        names), and the two only the engine knows."""
        shared = config.model_dump(include=set(cls.model_fields))
        return cls(**shared, walltime_seconds=walltime_seconds, payload_limit=payload_limit)

    def write(self, run_dir: Path) -> None:
        (run_dir / MANAGER_SETTINGS).write_text(self.model_dump_json(indent=1))

    @classmethod
    def read(cls, run_dir: Path) -> ManagerSettings:
        return cls.model_validate_json((run_dir / MANAGER_SETTINGS).read_text())
