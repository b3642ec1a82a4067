"""``mpiexec`` as a block launcher: one manager per node, as Parsl's ``MpiExecLauncher``.

The seed's Polaris configuration is ``MpiExecLauncher(bind_cmd="--cpu-bind", overrides=
"--depth=64 --ppn 1")``; on Polaris (Cray PALS) that becomes::

    mpiexec -n 2 --ppn 1 --cpu-bind depth --depth=64 /bin/bash <command file>

``bind_cmd`` is the CPU-binding flag; PALS's ``--cpu-bind`` needs a policy word, so when the
overrides carry ``--depth`` the launcher writes ``--cpu-bind depth`` (what ALCF documents).  The
defaults (no binding, ``-ppn 1``) are accepted by both Cray PALS and MPICH's hydra, which rejects
``--cpu-bind``/``--depth`` ("unrecognized argument").  The per-node command is passed as
``/bin/bash -c '<command>'`` so that ``worker_init``'s environment and any quoting survive.
"""

from __future__ import annotations

import re
import shlex

from outpost_endpoint.launchers.base import Launcher

_PPN = re.compile(r"(^|\s)(--?ppn)(\s+|=)\S+")


class MpiExecLauncher(Launcher):
    """``mpiexec -n <nodes x tasks> -ppn <tasks> [bind] [overrides] <command>``."""

    def __init__(self, bind_cmd: str | None = None, overrides: str = "") -> None:
        self.bind_cmd = (bind_cmd or "").strip()
        self.overrides = (overrides or "").strip()

    def mpiexec_args(self, nodes_per_block: int, tasks_per_node: int = 1) -> str:
        parts = ["mpiexec", "-n", str(nodes_per_block * tasks_per_node)]
        if not _PPN.search(self.overrides):
            parts += ["-ppn", str(tasks_per_node)]
        if self.bind_cmd:
            bind = self.bind_cmd
            if bind in ("--cpu-bind", "-cpu-bind") and "--depth" in self.overrides:
                bind = f"{bind} depth"
            parts.append(bind)
        if self.overrides:
            parts.append(self.overrides)
        return " ".join(parts)

    def __call__(self, command: str, nodes_per_block: int, tasks_per_node: int = 1) -> str:
        return wrap_command(command, self.mpiexec_args(nodes_per_block, tasks_per_node))


def wrap_command(command: str, prefix: str) -> str:
    """``prefix /bin/bash -c '<command>'``: mpiexec, srun and aprun exec their arguments
    directly (no shell re-parses them), so one level of quoting carries any command, with no
    command file that would have to live on a file system every node sees."""
    return f"{prefix} /bin/bash -c {shlex.quote(command)}"
