"""An MPIFunction through the engine on a two-"node" local block, under MPICH's mpiexec."""

from __future__ import annotations

from pathlib import Path

import pytest

from outpost import MPIFunction

from ...recipes import ensure_mpich
from .conftest import EngineFactory, envelope, value


@pytest.fixture(autouse=True, scope="module")
def _mpich() -> None:
    """MPICH's hydra mpiexec (the engine's default MPI templates cover hydra, Cray PALS, srun)."""
    ensure_mpich()


def test_mpi_function_runs_on_the_nodes_it_was_packed_onto(make_engine: EngineFactory) -> None:
    engine = make_engine(max_workers_per_node=1, provider={"nodes_per_block": 2})
    # single quotes: each rank's shell expands PMI_RANK, not the shell that runs mpiexec
    fn = MPIFunction("sh -c 'echo rank=$PMI_RANK size=$PMI_SIZE nodefile=$OUTPOST_MPI_NODEFILE'")
    spec = {"num_nodes": 2, "ranks_per_node": 1}
    result = value(engine.submit(envelope(fn, spec=spec)).result(120))
    assert result.returncode == 0, result.stderr
    lines = sorted(result.stdout.splitlines())
    assert [line.split()[0] for line in lines] == ["rank=0", "rank=1"]
    assert "-f " in result.cmd or "--hostfile" in result.cmd  # hydra or PALS template
    nodefile = Path(lines[0].split("nodefile=")[1])
    assert len(nodefile.read_text().split()) == 2  # one line per node it was given
    # a one-node task fits beside nothing else while the two-node task runs; alone it runs
    small = value(engine.submit(envelope(fn, spec={"num_nodes": 1, "num_ranks": 2})).result(120))
    assert small.returncode == 0 and len(small.stdout.splitlines()) == 2
