"""Launchers that need no MPI: ``simple`` (N copies per node via the shell) and ``single``."""

from __future__ import annotations

import shlex

from outpost_endpoint.launchers.base import Launcher


class SingleNodeLauncher(Launcher):
    """Runs ``tasks_per_node`` copies of the command on the block's one node and waits for all;
    the block's exit status is the last failure's (0 when all succeeded).  For local blocks
    and one-node batch jobs."""

    def __call__(self, command: str, nodes_per_block: int, tasks_per_node: int = 1) -> str:
        if tasks_per_node == 1:
            return command
        return (
            "pids=''; status=0\n"
            f"for i in $(seq 1 {int(tasks_per_node)}); do\n"
            f'  OUTPOST_TASK_INDEX=$i bash -c {shlex.quote(command)} & pids="$pids $!"\n'
            "done\n"
            "for p in $pids; do wait $p || status=$?; done\n"
            "exit $status"
        )


class SimpleLauncher(Launcher):
    """Runs the command once, as is: the command itself must spread over the nodes (or the
    block has one node).  Parsl's SimpleLauncher."""

    def __call__(self, command: str, nodes_per_block: int, tasks_per_node: int = 1) -> str:
        return command
