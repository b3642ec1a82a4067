"""Real schedulers, MPI and private RabbitMQ ports for the tests (tests/fixtures recipes).

Each recipe is idempotent (it does nothing when the thing is already installed and running), so
every test that needs Slurm or MPICH calls the same function instead of skipping when a
previous test has not yet installed it.  Without root or apt-get the test is skipped with the
command that would fix it.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
SLURM_RECIPE = FIXTURES / "slurm" / "slurm-one-node.sh"
MPI_RECIPE = FIXTURES / "mpi" / "mpi.sh"


def _run_recipe(recipe: Path, *args: str, needs: str) -> None:
    if os.geteuid() != 0 or not (shutil.which(needs) or shutil.which("apt-get")):
        pytest.skip(f"{recipe.name} needs root and {needs} or apt-get; run `bash {recipe}`")
    proc = subprocess.run(["bash", str(recipe), *args], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"{recipe} failed:\n{proc.stdout}\n{proc.stderr}")


def ensure_slurm() -> None:
    """Start the one-node Slurm cluster of tests/fixtures/slurm (installing it if missing)."""
    _run_recipe(SLURM_RECIPE, "--no-check", needs="sbatch")


def _hydra() -> bool:
    if shutil.which("mpiexec") is None:
        return False
    out = subprocess.run(["mpiexec", "--version"], capture_output=True, text=True, timeout=30)
    return "hydra" in (out.stdout + out.stderr).lower()


def ensure_mpich() -> str:
    """MPICH's hydra ``mpiexec`` (the recipe installs it and makes it the default ``mpiexec``
    if missing: Open MPI's does not take ``-ppn``/``-f``); returns its path."""
    if not _hydra():
        _run_recipe(MPI_RECIPE, needs="mpiexec.mpich")
    path = shutil.which("mpiexec")
    assert path and _hydra(), "the MPI recipe ran but mpiexec is not MPICH's hydra"
    return path


def private_broker_port(extra_offsets: tuple[int, ...] = ()) -> int:
    """An AMQP port for a private RabbitMQ node (tests/fixtures/rabbitmq_private.sh) whose
    companion ports -- management ``+10000``, Erlang distribution ``+20000``, and
    ``extra_offsets`` (e.g. a TLS listener) -- are all free on 127.0.0.1 now.  Picking one at
    random without this check once chose a distribution port (41000-45000) that a client
    socket held in the ephemeral range, and the node never started."""
    offsets = (0, 10000, 20000, *extra_offsets)
    for _ in range(200):
        port = random.randint(21000, 25000)
        if all(_free(port + offset) for offset in offsets):
            return port
    raise RuntimeError("no free port set for a private RabbitMQ node in 21000-25000")


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
