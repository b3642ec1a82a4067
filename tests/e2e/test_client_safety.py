"""Client papercuts that lost work (issue 11), through the whole path with real processes:

* ``sys.exit(3)`` inside a task ends the task, never the user's script (both engines);
* Ctrl-C while waiting on a result leaves at once and prints how to collect the results later;
* an unknown task group (or another user's) is a clear 404 in the API, the CLI and
  ``reload_tasks()``, not an empty success;
* a group whose tasks did not all reach the service says ``submitted N, stored M``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from outpost import Client, Executor
from outpost.cli import cli
from outpost.errors import NotFoundError

from .stack import RunningEndpoint, RunningService, make_endpoint

pytestmark = pytest.mark.e2e

WAIT = 120

EXIT_SCRIPT = """
import sys
from outpost import Executor
from outpost.errors import RemoteSystemExit


def leave(code):
    sys.exit(code)


with Executor(endpoint_id=sys.argv[1]) as ex:
    try:
        ex.submit(leave, 3).result(timeout=120)
    except RemoteSystemExit as exc:
        print("caught", type(exc).__name__, exc.code, exc.remote_type, flush=True)
print("still here", flush=True)
"""

SIGINT_SCRIPT = """
import sys
from outpost import Executor


def nap(seconds):
    import time

    time.sleep(seconds)
    return seconds


with Executor(endpoint_id=sys.argv[1]) as ex:
    future = ex.submit(nap, 600)
    assert future.task_id_ready.wait(120)
    print("group", ex.task_group_id, "task", future.task_id, flush=True)
    print("waiting", flush=True)
    future.result()
"""


@pytest.fixture(scope="module")
def pool_endpoint(
    service: RunningService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningEndpoint]:
    """An endpoint on the process-pool engine (the module's ``endpoint`` is high-throughput)."""
    home = tmp_path_factory.mktemp("endpoint-pool")

    def pool(config: dict[str, Any]) -> None:
        config["engine"] = {"type": "process-pool", "max_workers": 1}

    running = make_endpoint(service, home, f"pool{uuid.uuid4().hex[:6]}", edit=pool)
    yield running
    running.run("stop", running.name, check=False)


@pytest.mark.parametrize("engine", ["high-throughput", "process-pool"])
def test_sys_exit_in_a_task_does_not_end_the_client(
    engine: str, service: RunningService, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    fixture = "endpoint" if engine == "high-throughput" else "pool_endpoint"
    endpoint: RunningEndpoint = request.getfixturevalue(fixture)
    script = tmp_path / "script.py"
    script.write_text(EXIT_SCRIPT)
    run = subprocess.run(
        [sys.executable, str(script), endpoint.endpoint_id],
        env=service.env(tmp_path),
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "caught RemoteSystemExit 3 builtins.SystemExit" in run.stdout
    assert "still here" in run.stdout


def test_ctrl_c_while_waiting_leaves_at_once_and_says_how_to_come_back(
    service: RunningService, endpoint: RunningEndpoint, tmp_path: Path
) -> None:
    script = tmp_path / "script.py"
    script.write_text(SIGINT_SCRIPT)
    process = subprocess.Popen(
        [sys.executable, str(script), endpoint.endpoint_id],
        env=service.env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("waiting"):
            break
    else:
        process.wait(WAIT)
        raise AssertionError("the script ended early:\n" + "".join(lines))
    _, group, _, task_id = next(x for x in lines if x.startswith("group ")).split()
    process.send_signal(signal.SIGINT)
    try:
        rest, _ = process.communicate(timeout=10)  # generous: it must not wait for the task
    finally:
        if process.poll() is None:
            process.kill()
        Client(service.url, service.token).cancel_task(task_id)  # free the endpoint's worker
    output = "".join(lines) + rest
    assert process.returncode != 0 and "KeyboardInterrupt" in output, output
    assert f"Executor(task_group_id='{group}').reload_tasks()" in output
    assert f"outpost tasks group {group}" in output
    # the task it left behind is still at the service
    assert Client(service.url, service.token).get_task(task_id)["task_group_id"] == group


def test_an_unknown_or_foreign_task_group_is_a_404_everywhere(
    service: RunningService, endpoint: RunningEndpoint, tmp_path: Path
) -> None:
    client = Client(service.url, service.token)
    with Executor(endpoint_id=endpoint.endpoint_id, client=client) as ex:
        assert ex.submit(abs, -4).result(WAIT) == 4
        mine = ex.task_group_id
    bob = service.create_user(f"bob{uuid.uuid4().hex[:6]}")
    unknown = str(uuid.uuid4())
    for token, group in ((service.token, unknown), (bob, mine)):
        headers = {"Authorization": f"Bearer {token}"}
        for method, route in (("GET", "tasks"), ("GET", "summary"), ("POST", "retry")):
            answer = requests.request(
                method, f"{service.url}/v1/task_groups/{group}/{route}", headers=headers,
                json={} if method == "POST" else None, timeout=30,
            )  # fmt: skip
            assert answer.status_code == 404, (route, answer.text)
            error = answer.json()["error"]
            assert error["message"].startswith(f"no task group {group} among yours"), error
        env = {"OUTPOST_URL": service.url, "OUTPOST_TOKEN": token}
        for argv in (["tasks", "group", group], ["tasks", "retry", "--group", group]):
            result = CliRunner().invoke(cli, argv, env=env, input="")
            assert result.exit_code != 0, result.output
            assert f"no task group {group} among yours" in result.output
        other = Client(service.url, token)
        with pytest.raises(NotFoundError, match=f"cannot reload the tasks of group {group}"):
            Executor(client=other, task_group_id=group).reload_tasks()
        other.close()
    client.close()


def test_the_group_summary_shows_tasks_that_never_reached_the_service(
    service: RunningService, endpoint: RunningEndpoint
) -> None:
    client = Client(service.url, service.token)
    with Executor(endpoint_id=endpoint.endpoint_id, client=client) as ex:
        stored = [ex.submit(abs, -i) for i in range(3)]
        assert [f.result(WAIT) for f in stored] == [0, 1, 2]
        ex.endpoint_id = str(uuid.uuid4())  # a batch the service refuses (unknown endpoint)
        lost = [ex.submit(abs, -i) for i in range(2)]
        assert all(isinstance(f.exception(WAIT), NotFoundError) for f in lost)
        ex.endpoint_id = endpoint.endpoint_id
        assert ex.submit(abs, -9).result(WAIT) == 9
        group = ex.task_group_id
    summary = client.task_group_summary(group)
    assert summary["submitted"] == 6 and summary["stored"] == 4
    env = {"OUTPOST_URL": service.url, "OUTPOST_TOKEN": service.token}
    judged = CliRunner().invoke(cli, ["tasks", "group", group, "--no-tasks"], env=env)
    assert judged.exit_code == 0, judged.output
    assert "4 tasks (success: 4)" in judged.output
    assert "submitted 6, stored 4: 2 task(s) accepted by Executor.submit never reached" in (
        judged.output
    )
    client.close()
