"""``srun`` as a block launcher: one manager per node of a Slurm allocation."""

from __future__ import annotations

from outpost_endpoint.launchers.base import Launcher
from outpost_endpoint.launchers.mpiexec import wrap_command


class SrunLauncher(Launcher):
    """``srun --ntasks-per-node=<tasks> --nodes=<nodes> --ntasks=<total> [overrides] <cmd>``.

    ``--kill-on-bad-exit=0``: one manager dying must not take the others down with it.
    """

    def __init__(self, overrides: str = "") -> None:
        self.overrides = (overrides or "").strip()

    def srun_args(self, nodes_per_block: int, tasks_per_node: int = 1) -> str:
        parts = [
            "srun",
            f"--ntasks-per-node={tasks_per_node}",
            f"--nodes={nodes_per_block}",
            f"--ntasks={nodes_per_block * tasks_per_node}",
            "--kill-on-bad-exit=0",
        ]
        if self.overrides:
            parts.append(self.overrides)
        return " ".join(parts)

    def __call__(self, command: str, nodes_per_block: int, tasks_per_node: int = 1) -> str:
        return wrap_command(command, self.srun_args(nodes_per_block, tasks_per_node))
