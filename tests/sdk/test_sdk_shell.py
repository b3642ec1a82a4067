"""ShellFunction and MPIFunction, really run with /bin/sh."""

from __future__ import annotations

import json
import pickle

import cloudpickle
import pytest

from outpost import MPIFunction, ShellFunction, ShellResult
from outpost.errors import ConfigurationError
from outpost.protocol import deserialize, serialize_function
from outpost.shell import ENV_MPI_LAUNCHER, ENV_RESOURCE_SPECIFICATION, mpi_launcher


def test_echo() -> None:
    result = ShellFunction("echo hello")()
    assert result == ShellResult(returncode=0, stdout="hello\n", stderr="", cmd="echo hello")
    assert isinstance(result.returncode, int) and isinstance(result.stdout, str)


def test_placeholders_from_keyword_arguments() -> None:
    sh = ShellFunction("echo {greeting} {name}; echo done >&2")
    result = sh(greeting="hi", name="polaris")
    assert result.stdout == "hi polaris\n"
    assert result.stderr == "done\n"
    assert result.cmd == "echo hi polaris; echo done >&2"


def test_missing_placeholder_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"\{name\}.*literal braces"):
        ShellFunction("echo {name}")()


def test_literal_braces() -> None:
    assert ShellFunction("echo {{x}}")().stdout == "{x}\n"


def test_non_zero_exit_is_a_result_not_an_exception() -> None:
    result = ShellFunction("echo out; echo err >&2; exit 3")()
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_output_is_truncated_to_the_tail() -> None:
    result = ShellFunction("seq 1 50", snippet_lines=5)()
    lines = result.stdout.splitlines()
    assert lines[1:] == ["46", "47", "48", "49", "50"]
    assert "truncated" in lines[0] and "50" in lines[0]


def test_walltime_kills_the_command() -> None:
    result = ShellFunction("echo started; sleep 30; echo never", walltime=0.2)()
    assert result.returncode == 124
    assert result.stdout == "started\n"
    assert "walltime" in result.stderr


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        ShellFunction("")
    with pytest.raises(ValueError):
        ShellFunction("true", walltime=0)


def test_ships_by_reference_and_runs_many_times() -> None:
    sh = ShellFunction("echo {n}", name="count")
    payload = serialize_function(sh)
    assert b"outpost.shell" in payload  # pickled by reference to an importable class
    rebuilt = deserialize(payload)
    assert [rebuilt(n=i).stdout for i in range(3)] == ["0\n", "1\n", "2\n"]
    assert pickle.loads(cloudpickle.dumps(sh)).name == "count"


def test_mpi_launcher_default() -> None:
    spec = {"num_nodes": 2, "ranks_per_node": 4}
    assert mpi_launcher(spec, None) == "mpiexec -n 8 -ppn 4"
    assert mpi_launcher({"num_ranks": 6, "num_nodes": 2}) == "mpiexec -n 6 -ppn 3"
    spec_opts = spec | {"launcher_options": "--cpu-bind depth"}
    assert mpi_launcher(spec_opts) == "mpiexec -n 8 -ppn 4 --cpu-bind depth"


def test_mpi_launcher_needs_ranks() -> None:
    with pytest.raises(ConfigurationError, match="ranks_per_node"):
        mpi_launcher({})
    with pytest.raises(ConfigurationError, match="positive int"):
        mpi_launcher({"num_ranks": 0})


def test_mpi_function_uses_the_workers_launcher_and_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = {"num_nodes": 2, "ranks_per_node": 3, "launcher_options": "--bind"}
    monkeypatch.setenv(ENV_RESOURCE_SPECIFICATION, json.dumps(spec))
    monkeypatch.setenv(ENV_MPI_LAUNCHER, "echo launch -n {num_ranks} -N {num_nodes}")
    result = MPIFunction("hostname-{x}")(x=1)
    assert result.returncode == 0
    assert result.stdout == "launch -n 6 -N 2 --bind hostname-1\n"
    assert result.cmd == "echo launch -n 6 -N 2 --bind hostname-1"


def test_mpi_function_without_spec_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_RESOURCE_SPECIFICATION, raising=False)
    with pytest.raises(ConfigurationError, match="resource_specification"):
        MPIFunction("hostname")()
