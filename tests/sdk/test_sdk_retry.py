"""Retrying a campaign's failures from the SDK and the ``outpost`` CLI, against a real service
process (SQLite, real RabbitMQ); this test plays the endpoint by publishing result envelopes
on the result exchange the service's ingest consumes, as an endpoint does."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from click.testing import CliRunner

from outpost import Client, Executor
from outpost.cli import cli
from outpost.protocol import ErrorInfo, ResultEnvelope, TaskState, serialize

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.e2e.stack import RunningService, start_service, stop_service

WAIT = 60


@pytest.fixture(scope="module")
def real_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    home = tmp_path_factory.mktemp("sdk-retry-service")
    running = start_service(home, f"sqlite:///{home}/outpost.db")
    yield running
    stop_service(running)


class PlayedEndpoint:
    """Publishes results for tasks the way ``outpost-endpoint`` does."""

    def __init__(self, client: Client) -> None:
        registration = client.register_endpoint("played-endpoint")
        self.endpoint_id: str = registration["endpoint_id"]
        self.amqp = registration["amqp"]
        self.connection = pika.BlockingConnection(pika.URLParameters(self.amqp["url"]))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()

    def finish(self, task_id: str, error: str | None = None, value: object = None) -> None:
        result = ResultEnvelope(
            task_id=task_id,
            endpoint_id=self.endpoint_id,
            state=TaskState.FAILED if error else TaskState.SUCCESS,
            value=None if error else serialize(value),
            error=ErrorInfo(type="ValueError", message=error) if error else None,
        )
        self.channel.basic_publish(
            self.amqp["result_exchange"],
            self.amqp["result_routing_key"],
            result.to_bytes(),
            pika.BasicProperties(delivery_mode=2, content_type="application/json", type="result"),
        )

    def close(self) -> None:
        self.connection.close()


def test_retry_failures_then_reload_latest_attempts(real_service: RunningService) -> None:
    client = Client(real_service.url, real_service.token)
    played = PlayedEndpoint(client)
    env = {"OUTPOST_URL": real_service.url, "OUTPOST_TOKEN": real_service.token}
    try:
        with Executor(played.endpoint_id, client) as ex:
            futures = [ex.submit(pow, 2, i) for i in range(4)]
            ids = [f.task_id_ready.wait(WAIT) and f.task_id for f in futures]
            for i, task_id in enumerate(ids):
                assert task_id
                played.finish(task_id, error="flaky input" if i % 2 else None, value=2**i)
            assert futures[0].result(WAIT) == 1 and futures[2].result(WAIT) == 4
            assert "ValueError: flaky input" in str(futures[1].exception(WAIT))
            group = ex.task_group_id

        summary = client.task_group_summary(group)
        assert summary["states"] == {"success": 2, "failed": 2}
        assert summary["errors"] == [
            {"type": "ValueError", "message": "flaky input", "count": 2,
             "task_ids": [ids[1], ids[3]]}
        ]  # fmt: skip
        view = CliRunner().invoke(cli, ["tasks", "group", group, "--no-tasks"], env=env)
        assert view.exit_code == 0, view.output
        assert "4 tasks (failed: 2, success: 2)" in view.output
        assert "2  ValueError: flaky input" in view.output and ids[1] in view.output

        # stdin is not a terminal here: no prompt, straight to the retry
        retry = CliRunner().invoke(cli, ["tasks", "retry", "--group", group, "--state", "failed"],
                                   env=env, input="")  # fmt: skip
        assert retry.exit_code == 0, retry.output
        assert "retried 2 task(s) (failed)" in retry.output
        assert client.retry_task_group(group, ["failed"]) == []  # nothing copied twice

        with Executor(played.endpoint_id, client, task_group_id=group) as again:
            reloaded = again.reload_tasks()
            new_ids = [f.task_id for f in reloaded]
            assert new_ids[0] == ids[0] and new_ids[2] == ids[2]  # successes kept, not rerun
            assert new_ids[1] not in ids and new_ids[3] not in ids
            assert len(again.reload_tasks(attempts="all")) == 6
            for task_id in (new_ids[1], new_ids[3]):
                assert task_id
                played.finish(task_id, value=-1)
            assert [f.result(WAIT) for f in reloaded] == [1, -1, 4, -1]
        assert client.task_group_summary(group)["latest_states"] == {"success": 4}
    finally:
        played.close()
        client.close()
