"""Launcher prefixes for MPI *tasks* (``MPIFunction``): which template to hand the worker.

The block launcher starts one manager per node; an ``MPIFunction`` task then needs its own
``mpiexec``/``srun`` over the nodes the engine gave it.  The worker passes three variables
(contract in :mod:`outpost.shell`): ``OUTPOST_RESOURCE_SPECIFICATION`` (the task's spec),
``OUTPOST_MPI_NODEFILE`` (a file naming the task's nodes) and ``OUTPOST_MPI_LAUNCHER`` (a
``str.format`` template).  This module produces the template for each MPI flavour:

* ``hydra`` (MPICH, Intel MPI): ``mpiexec -n R -ppn P -f FILE``; hydra rejects PALS's
  ``--cpu-bind``/``--depth``, so binding goes in ``launcher_options`` (``-bind-to core``);
* ``pals`` (Cray PALS, Polaris/Aurora): ``mpiexec -n R --ppn P --hostfile FILE``;
* ``srun`` (inside Slurm blocks): ``srun --nodes N --ntasks R --ntasks-per-node P
  --nodelist=FILE --overlap`` (``--overlap``: the managers' step already holds the nodes;
  a path containing ``/`` makes ``--nodelist`` read the file).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from outpost_endpoint.errors import ConfigError
from outpost_endpoint.launchers.nodelist import write_nodefile

TEMPLATES: dict[str, str] = {
    "hydra": "mpiexec -n {num_ranks} -ppn {ranks_per_node} -f {nodefile} {launcher_options}",
    "pals": (
        "mpiexec -n {num_ranks} --ppn {ranks_per_node} --hostfile {nodefile} {launcher_options}"
    ),
    "srun": (
        "srun --nodes={num_nodes} --ntasks={num_ranks} --ntasks-per-node={ranks_per_node} "
        "--nodelist={nodefile} --overlap {launcher_options}"
    ),
}
FLAVOURS = tuple(TEMPLATES)


def template_for(flavour: str) -> str:
    """The ``OUTPOST_MPI_LAUNCHER`` template of ``flavour`` (one of :data:`FLAVOURS`)."""
    try:
        return TEMPLATES[flavour]
    except KeyError:
        raise ConfigError(
            f"MPI launcher flavour {flavour!r} is not one of: {', '.join(FLAVOURS)}"
        ) from None


def detect_flavour(environ: Mapping[str, str] | None = None) -> str:
    """``srun`` inside a Slurm job, ``pals`` where ``mpiexec --version`` says PALS (Cray),
    otherwise ``hydra``."""
    env = os.environ if environ is None else environ
    if env.get("SLURM_JOB_ID"):
        return "srun"
    mpiexec = shutil.which("mpiexec", path=env.get("PATH"))
    if mpiexec:
        try:
            out = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return "hydra"
        if "pals" in (out.stdout + out.stderr).lower():
            return "pals"
    return "hydra"


def default_template(environ: Mapping[str, str] | None = None) -> str:
    """The template for the MPI found where this runs (for a manager inside a block, when
    ``engine.mpi_launcher`` is not configured)."""
    return template_for(detect_flavour(environ))


def task_environment(
    spec: Mapping[str, Any],
    nodes: Sequence[str],
    nodefile: str | os.PathLike[str],
    template: str,
) -> dict[str, str]:
    """The variables the worker sets around one MPI task on ``nodes``.

    Writes ``nodefile`` (one host per line, ``spec['num_nodes']`` of ``nodes``).  Raises
    ConfigError when the task asks for more nodes than it was given.
    """
    want = spec.get("num_nodes", 1)
    if isinstance(want, bool) or not isinstance(want, int) or want < 1:
        raise ConfigError(f"resource_specification num_nodes must be an int >= 1, got {want!r}")
    if want > len(nodes):
        raise ConfigError(
            f"the task asks for num_nodes={want} but only {len(nodes)} node(s) were given to it "
            f"({', '.join(nodes) or 'none'}); lower num_nodes or raise nodes_per_block"
        )
    path = write_nodefile(nodefile, list(nodes)[:want])
    return {
        "OUTPOST_RESOURCE_SPECIFICATION": json.dumps(dict(spec)),
        "OUTPOST_MPI_NODEFILE": str(Path(path).absolute()),
        "OUTPOST_MPI_LAUNCHER": template,
    }
