"""The whole path on quorum queues (``OUTPOST_QUEUE_TYPE=quorum``): a process-pool endpoint
consumes from a quorum task queue, results come back, and a malformed task message the real
endpoint rejects is dead-lettered into ``P.dead``."""

from __future__ import annotations

import concurrent.futures
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest
import requests

from outpost import Client, Executor

from .stack import (
    AMQP_URL,
    RunningEndpoint,
    RunningService,
    make_endpoint,
    start_service,
    stop_service,
)

pytestmark = pytest.mark.e2e


def square(x: int) -> int:
    return x * x


def queue_type(name: str) -> Any:
    response = requests.get(
        f"http://127.0.0.1:15672/api/queues/%2F/{name}", auth=("guest", "guest"), timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()["type"]


@pytest.fixture(scope="module")
def quorum_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    home = tmp_path_factory.mktemp("service-quorum")
    running = start_service(
        home, f"sqlite:///{home}/outpost.db", env_extra={"OUTPOST_QUEUE_TYPE": "quorum"}
    )
    yield running
    stop_service(running)


@pytest.fixture(scope="module")
def quorum_endpoint(
    quorum_service: RunningService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningEndpoint]:
    home = tmp_path_factory.mktemp("endpoint-quorum")
    running = make_endpoint(quorum_service, home, f"ep{uuid.uuid4().hex[:6]}")
    yield running
    running.run("stop", running.name, check=False)


def test_a_hundred_tasks_round_trip_on_quorum_queues(
    quorum_service: RunningService, quorum_endpoint: RunningEndpoint
) -> None:
    prefix = quorum_service.amqp_prefix
    assert queue_type(quorum_endpoint.task_queue) == "quorum"
    assert queue_type(f"{prefix}.ingest") == "quorum"
    client = Client(url=quorum_service.url, token=quorum_service.token)
    with Executor(endpoint_id=quorum_endpoint.endpoint_id, client=client) as ex:
        futures = [ex.submit(square, i) for i in range(100)]
        _done, not_done = concurrent.futures.wait(futures, timeout=240)
        assert not not_done
        assert [f.result() for f in futures] == [i * i for i in range(100)]

    # The real endpoint rejects (requeue=False) what is not a task: the quorum queue
    # dead-letters it, and the endpoint keeps serving.
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            f"{prefix}.tasks",
            quorum_endpoint.endpoint_id,
            b"this is not a task",
            pika.BasicProperties(delivery_mode=2),
        )
        for method, properties, body in channel.consume(f"{prefix}.dead", inactivity_timeout=60):
            assert method is not None, "the rejected message never reached the dead queue"
            channel.basic_ack(method.delivery_tag)
            assert body == b"this is not a task"
            assert properties.headers["x-death"][0]["reason"] == "rejected"
            break
        channel.cancel()
    finally:
        connection.close()
    with Executor(endpoint_id=quorum_endpoint.endpoint_id, client=client) as ex:
        assert ex.submit(square, 12).result(timeout=120) == 144
