"""The launcher interface: wrap the per-node manager command for a block.

A launcher turns "run this command once per node" into the command line the batch job runs,
e.g. ``mpiexec -n 2 --ppn 1 --cpu-bind depth --depth=64 <command>`` for the seed's Polaris
configuration, or the command itself for a one-node local block.  Launchers are small callables,
as in Parsl; they never run anything themselves.
"""

from __future__ import annotations

import abc


class Launcher(abc.ABC):
    """Wraps a command so that it runs once on each node of a block."""

    @abc.abstractmethod
    def __call__(self, command: str, nodes_per_block: int, tasks_per_node: int = 1) -> str:
        """The shell command line that starts ``tasks_per_node`` copies of ``command`` on each
        of ``nodes_per_block`` nodes."""
