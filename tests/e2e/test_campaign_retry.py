"""A campaign where some tasks fail on their first attempt, judged and retried through the
whole path (SDK/CLI -> service -> RabbitMQ -> endpoint): after the retry every task succeeded,
and the tasks that had succeeded were not run again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from outpost import Client, Executor
from outpost.cli import cli

from .stack import RunningEndpoint, RunningService

pytestmark = pytest.mark.e2e

WAIT = 120


def attempt(index: int, workdir: str) -> int:
    """Log that task ``index`` ran; odd tasks fail until the marker file exists."""
    with open(os.path.join(workdir, f"runs-{index}"), "a") as log:
        log.write("ran\n")
    if index % 2 and not os.path.exists(os.path.join(workdir, "marker")):
        raise RuntimeError(f"input {index} is not staged yet")
    return index * 10


def test_failed_tasks_are_retried_and_successes_not_rerun(
    service: RunningService, endpoint: RunningEndpoint, tmp_path: Path
) -> None:
    client = Client(url=service.url, token=service.token)
    env = {"OUTPOST_URL": service.url, "OUTPOST_TOKEN": service.token}
    count = 8
    with Executor(endpoint_id=endpoint.endpoint_id, client=client) as ex:
        futures = [ex.submit(attempt, i, str(tmp_path)) for i in range(count)]
        outcomes = [f.exception(WAIT) for f in futures]
        group = ex.task_group_id
    assert [e is None for e in outcomes] == [i % 2 == 0 for i in range(count)]

    judged = CliRunner().invoke(cli, ["tasks", "group", group, "--no-tasks"], env=env)
    assert judged.exit_code == 0, judged.output
    assert f"{count} tasks (failed: 4, success: 4)" in judged.output
    assert "RuntimeError: input 1 is not staged yet" in judged.output  # grouped per message

    (tmp_path / "marker").touch()  # the cause is fixed; retry only what failed
    retried = CliRunner().invoke(
        cli, ["tasks", "retry", "--group", group, "--state", "failed"], env=env, input=""
    )
    assert retried.exit_code == 0, retried.output
    assert "retried 4 task(s)" in retried.output

    with Executor(endpoint_id=endpoint.endpoint_id, client=client, task_group_id=group) as again:
        latest = again.reload_tasks()
        assert [f.result(WAIT) for f in latest] == [i * 10 for i in range(count)]
    runs = [len((tmp_path / f"runs-{i}").read_text().splitlines()) for i in range(count)]
    assert runs == [1 if i % 2 == 0 else 2 for i in range(count)]  # successes ran once
    summary = client.task_group_summary(group)
    assert summary["latest_states"] == {"success": count} and summary["retried"] == 4
    client.close()
