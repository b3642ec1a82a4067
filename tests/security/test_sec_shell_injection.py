"""Shell injection through a shared endpoint's allowed ShellFunction / MPIFunction.

Alice shares her endpoint with Bob and allows only ``ShellFunction("echo {msg}")`` and an
``MPIFunction``; Bob's tasks run as Alice's Unix account.  Before the fix, ``msg="hi; id >
/tmp/X"`` ran ``id`` as Alice: the value was pasted into the command text.  Now every value is
quoted for its shell context where the command is formatted -- in the endpoint's worker, by the
endpoint's installed ``outpost.shell`` -- and ``launcher_options`` are split into argv words
with shell metacharacters refused.  Hostile values are checked here with ``/bin/sh`` for real
and end to end through a real service and endpoint daemon: the command sees the literal string
and no side-effect file appears.
"""

# The durability fixtures are imported below, so test arguments of the same names "redefine" them.
# ruff: noqa: F811

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from outpost import Client, Executor, MPIFunction, ShellFunction
from outpost.errors import ConfigurationError
from outpost.shell import mpi_launcher
from outpost.shell_template import fill

from ..durability.conftest import service, service_database, service_home  # noqa: F401
from ..e2e.stack import RunningService, make_endpoint


def hostile_values(marker: Path) -> list[str]:
    """Values that would run ``touch MARKER`` if pasted into a command unquoted or quoted."""
    m = str(marker)
    return [
        f"hi; touch {m}",
        f"$(touch {m})",
        f"`touch {m}`",
        f"a && touch {m}",
        f"a || touch {m}",
        f"a\ntouch {m}",
        f"a | touch {m}",
        f"'; touch {m}; '",
        f'"; touch {m}; "',
        f"\\'; touch {m}; \\'",
        f"${{IFS}}touch${{IFS}}{m}",
        f"a > {m}",
        "-n",  # an option-looking value stays a value: `printf` below prints it
    ]


@pytest.mark.parametrize(
    "template, shape",
    [
        ("printf '%s\\n' {msg}", "{}"),
        ('printf "%s\\n" "{msg}"', "{}"),
        ("printf '%s\\n' '{msg}'", "{}"),
        ("printf '%s\\n' pre{msg}post", "pre{}post"),
        ("printf '%s\\n' \"pre {msg} post\"", "pre {} post"),
        ("printf '%s\\n' \"$(printf '%s' {msg})\"", "{}"),
        ("printf '%s\\n' \"$(printf '%s' \"{msg}\")\"", "{}"),
    ],
)
def test_hostile_values_reach_the_command_literally(
    template: str, shape: str, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    sh = ShellFunction(template)
    for value in hostile_values(marker):
        result = sh(msg=value)
        if "$(" in template:  # command substitution strips trailing newlines, as sh does
            assert result.stdout == shape.format(value).rstrip("\n") + "\n", result
        else:
            assert result.stdout == shape.format(value) + "\n", (value, result)
        assert result.returncode == 0, result
        assert not marker.exists(), f"{value!r} ran a command through {template!r}"


def test_legitimate_values_keep_working(tmp_path: Path) -> None:
    spaced = tmp_path / "a dir with spaces"
    spaced.mkdir()
    (spaced / "data file.txt").write_text("42\n")
    result = ShellFunction("cat {path}/{name}")(path=str(spaced), name="data file.txt")
    assert (result.returncode, result.stdout) == (0, "42\n")
    assert ShellFunction("seq {n} {m}")(n=2, m=4).stdout == "2\n3\n4\n"
    assert ShellFunction("echo {x:.2f}")(x=3.14159).stdout == "3.14\n"
    assert ShellFunction("echo {{x}} {y}")(y=1).stdout == "{x} 1\n"
    assert fill("echo {a}", {"a": "plain_word-1.0/x"}) == "echo plain_word-1.0/x"


@pytest.mark.parametrize(
    "template, where",
    [
        ("echo `{msg}`", "inside backticks"),
        ("echo ${msg}", "right after '[$]'"),
        ("echo $(( {msg} + 1 ))", r"inside \$\(\(...\)\)"),
        ("echo hi # {msg}", "comment"),
        ("cat <<EOF\n{msg}\nEOF", "here-document"),
        ("echo \\{msg}", "backslash"),
    ],
)
def test_placeholders_where_no_quoting_is_safe_are_refused(template: str, where: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"\{{msg\}} is .*{where}"):
        ShellFunction(template)


def test_launcher_options_are_argv_words_and_metacharacters_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = {"num_ranks": 2, "launcher_options": "--bind-to core --env 'A=b c'"}
    assert mpi_launcher(spec, "mpiexec -n {num_ranks} {launcher_options}") == (
        "mpiexec -n 2 --bind-to core --env 'A=b c'"
    )
    monkeypatch.setenv("OUTPOST_MPI_NODEFILE", "/run dir/nodes; touch x")
    template = "mpiexec -n {num_ranks} --hostfile {nodefile}"
    assert mpi_launcher({"num_ranks": 1}, template) == (
        "mpiexec -n 1 --hostfile '/run dir/nodes; touch x'"
    )
    for value in hostile_values(tmp_path / "pwned")[:-1]:
        if not any(c in value for c in ";&|<>`$\n\\"):
            continue  # quotes alone: split and quoted, tested above
        with pytest.raises(ConfigurationError, match="metacharacter"):
            mpi_launcher({"num_ranks": 1, "launcher_options": value})
    with pytest.raises(ConfigurationError, match="balance its quotes"):
        mpi_launcher({"num_ranks": 1, "launcher_options": "--env 'A=b"})


def test_shared_users_values_cannot_run_commands_on_a_real_endpoint(
    service: RunningService, tmp_path: Path
) -> None:
    """Bob, allowed only echo and an MPI function on Alice's endpoint, sends hostile values."""
    marker = tmp_path / "pwned"
    launcher = "echo launch -n {num_ranks} {launcher_options} --"
    name = f"inj{uuid.uuid4().hex[:6]}"
    endpoint = make_endpoint(
        service,
        tmp_path / "endpoint",
        name,
        edit=lambda config: config["engine"].update(mpi_launcher=launcher),
    )
    alice = Client(url=service.url, token=service.token)
    bob = Client(url=service.url, token=service.create_user("bob"))
    echo = ShellFunction("echo {msg}")
    mpi = MPIFunction("echo rank")
    try:
        allowed = [alice.register_function(echo), alice.register_function(mpi)]
        alice.set_endpoint_policy(endpoint.endpoint_id, ["bob"], allowed_functions=allowed)
        values = hostile_values(marker)[:-1]
        with Executor(endpoint.endpoint_id, client=bob, trust_endpoint=True) as ex:  # ShellResult
            echoes = [ex.submit(echo, msg=value) for value in values]
            ex.resource_specification = {"num_ranks": 1, "launcher_options": "--bind core"}
            legit = ex.submit(mpi)
            hostile = []
            for value in values:
                ex.resource_specification = {"num_ranks": 1, "launcher_options": value}
                hostile.append(ex.submit(mpi))
            for value, future in zip(values, echoes, strict=True):
                result = future.result(timeout=120)
                assert (result.returncode, result.stdout) == (0, value + "\n"), result
            assert legit.result(timeout=120).stdout == "launch -n 1 --bind core -- echo rank\n"
            for value, future in zip(values, hostile, strict=True):
                try:
                    result = future.result(timeout=120)
                except ConfigurationError as exc:  # metacharacters: refused, nothing ran
                    assert "launcher_options" in str(exc)
                else:  # only quotes: one literal argument of the launcher
                    assert result.stdout.startswith("launch -n 1 "), (value, result)
        assert not marker.exists()
    finally:
        endpoint.run("stop", name, check=False)
        alice.close()
        bob.close()
