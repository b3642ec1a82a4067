"""``aprun`` (Cray ALPS) as a block launcher, for the older Cray machines that still use it."""

from __future__ import annotations

from outpost_endpoint.launchers.base import Launcher
from outpost_endpoint.launchers.mpiexec import wrap_command


class AprunLauncher(Launcher):
    """``aprun -n <total> -N <tasks per node> [overrides] <cmd>``."""

    def __init__(self, overrides: str = "") -> None:
        self.overrides = (overrides or "").strip()

    def __call__(self, command: str, nodes_per_block: int, tasks_per_node: int = 1) -> str:
        prefix = f"aprun -n {nodes_per_block * tasks_per_node} -N {tasks_per_node}"
        if self.overrides:
            prefix = f"{prefix} {self.overrides}"
        return wrap_command(command, prefix)
