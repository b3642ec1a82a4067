"""Real schedulers, MPI, private RabbitMQ/PostgreSQL and the rule for missing infrastructure.

Installing is the bootstrap's job (``scripts/bootstrap.sh`` with ``OUTPOST_NEED_TEST_INFRA=1``,
as ``scripts/test.sh`` runs it: Slurm, MPICH, RabbitMQ, PostgreSQL).  Here the recipes only
check and start: Slurm's daemons are started by its idempotent recipe when Slurm is installed
but not running; a component that is not installed goes through :func:`missing`.

:func:`missing` is the one way a test gives up for lack of a component: a skip naming what is
missing and how to get it -- or, with ``OUTPOST_REQUIRE_INFRA=1`` (set by ``scripts/test.sh``
and so by ``.ci/run``), a failure, so a CI machine that lost RabbitMQ, PostgreSQL, Slurm or MPICH
cannot pass by skipping the tests that need them.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
SLURM_RECIPE = FIXTURES / "slurm" / "slurm-one-node.sh"
MPI_RECIPE = FIXTURES / "mpi" / "mpi.sh"
BOOTSTRAP = "OUTPOST_NEED_TEST_INFRA=1 bash scripts/bootstrap.sh"


def require_infra() -> bool:
    """True when missing infrastructure must fail tests (``OUTPOST_REQUIRE_INFRA=1``)."""
    return os.environ.get("OUTPOST_REQUIRE_INFRA", "") not in ("", "0")


def missing(component: str, how_to_fix: str) -> NoReturn:
    """Give up on this test because ``component`` is missing: skip, or fail under
    ``OUTPOST_REQUIRE_INFRA=1``.  ``how_to_fix`` says the command that provides it."""
    message = f"{component} is missing: {how_to_fix}"
    if require_infra():
        pytest.fail(f"OUTPOST_REQUIRE_INFRA=1 and {message}", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def _run_recipe(recipe: Path, *args: str) -> None:
    proc = subprocess.run(["bash", str(recipe), *args], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"{recipe} failed:\n{proc.stdout}\n{proc.stderr}")


def ensure_slurm() -> None:
    """Start the one-node Slurm cluster of tests/fixtures/slurm if it is not running (the
    recipe is idempotent); Slurm not installed is :func:`missing`."""
    if shutil.which("sbatch") is None or shutil.which("slurmctld") is None:
        missing("Slurm (sbatch, slurmctld)", f"install it with `{BOOTSTRAP}`")
    if os.geteuid() != 0:
        missing("root (to start the Slurm daemons)", f"run as root, or `sudo bash {SLURM_RECIPE}`")
    _run_recipe(SLURM_RECIPE, "--no-check")


def _hydra() -> bool:
    if shutil.which("mpiexec") is None:
        return False
    out = subprocess.run(["mpiexec", "--version"], capture_output=True, text=True, timeout=30)
    return "hydra" in (out.stdout + out.stderr).lower()


def ensure_mpich() -> str:
    """MPICH's hydra ``mpiexec`` (Open MPI's does not take ``-ppn``/``-f``); returns its path.
    When MPICH is installed but another ``mpiexec`` is the default, the recipe makes MPICH's
    the default (no install); MPICH not installed is :func:`missing`."""
    if not _hydra():
        if shutil.which("mpiexec.mpich") is None:
            missing("MPICH (mpiexec.mpich)", f"install it with `{BOOTSTRAP}`")
        if os.geteuid() != 0:
            missing("root (to make MPICH's mpiexec the default)", f"`sudo bash {MPI_RECIPE}`")
        _run_recipe(MPI_RECIPE, "--no-check")
    path = shutil.which("mpiexec")
    assert path and _hydra(), "the MPI recipe ran but mpiexec is not MPICH's hydra"
    return path


def ensure_private_rabbitmq() -> None:
    """A private RabbitMQ node can start here (tests/fixtures/rabbitmq_private.sh)."""
    if shutil.which("/usr/lib/rabbitmq/bin/rabbitmq-server") is None:
        missing("rabbitmq-server (for a private node)", f"install it with `{BOOTSTRAP}`")


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
