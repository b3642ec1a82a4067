"""RabbitMQ killed (SIGKILL) and restarted mid-campaign loses no task and doubles none.

Uses a private throwaway node (tests/fixtures/rabbitmq_private.sh) that the service and the
endpoint daemon both use: without the management plugin (one shared broker user, classic
queues; on SQLite and on PostgreSQL), and with it (a broker user per endpoint, quorum queues).
Killed: the node's beam.smp, with SIGKILL, once a quarter of the first half of the campaign is
stored.  While it is down the second half is submitted: the service stores those tasks and
answers 503 naming them (the SDK retried under one request id first); after the restart the
sweeper publishes them.  Counted: every task of both halves has exactly one terminal result
with the right value; the endpoint, its result publisher and the service's ingest all came
back by themselves (reconnect with backoff) -- with per-endpoint users, as the endpoint's own
user.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from outpost.errors import ServiceUnavailableError

from ..e2e.stack import RunningEndpoint, RunningService, make_endpoint, start_service
from .campaign import TASKS, Campaign
from .conftest import BOTH_DATABASES, PrivateBroker, stop


@pytest.fixture
def broker_stack(
    private_broker: PrivateBroker, tmp_path: Path, service_home: Path, service_database: str
) -> Iterator[tuple[RunningService, RunningEndpoint]]:
    env = {"OUTPOST_REPUBLISH_AFTER": "1"}
    if private_broker.management:  # per-endpoint broker users (the default) on quorum queues
        env["OUTPOST_QUEUE_TYPE"] = "quorum"
    else:  # a node without the management plugin: no per-endpoint users
        env["OUTPOST_BROKER_AUTH"] = "shared"
    service = start_service(service_home, service_database, amqp_url=private_broker.url,
                            env_extra=env)  # fmt: skip
    endpoint = make_endpoint(service, tmp_path / "endpoint", "brokerfault")
    yield service, endpoint
    endpoint.run("stop", endpoint.name, check=False, timeout=180)
    stop(service, shared_broker=False)


@BOTH_DATABASES
def test_rabbitmq_kill_9_and_restart_mid_campaign(
    broker_stack: tuple[RunningService, RunningEndpoint],
    private_broker: PrivateBroker,
    tmp_path: Path,
) -> None:
    kill_and_restart_mid_campaign(*broker_stack, private_broker, tmp_path)


@pytest.mark.parametrize("private_broker", [True], indirect=True, ids=["management"])
def test_rabbitmq_kill_9_with_broker_users_and_quorum_queues(
    broker_stack: tuple[RunningService, RunningEndpoint],
    private_broker: PrivateBroker,
    tmp_path: Path,
) -> None:
    """The same on a node with the management plugin: the endpoint connects as its own
    broker user ``outpost-ep-<id>`` (which must survive the restart), all queues quorum."""
    service, endpoint = broker_stack
    queues = private_broker.do("ctl", "list_queues", "name", "type")
    assert f"{endpoint.task_queue}\tquorum" in queues, queues
    users = private_broker.do("ctl", "list_users")
    assert f"outpost-ep-{endpoint.endpoint_id}" in users, users
    kill_and_restart_mid_campaign(service, endpoint, private_broker, tmp_path)
    connections = private_broker.do("ctl", "list_connections", "user")
    assert f"outpost-ep-{endpoint.endpoint_id}" in connections, connections


def kill_and_restart_mid_campaign(
    service: RunningService,
    endpoint: RunningEndpoint,
    private_broker: PrivateBroker,
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    journal = endpoint.home / "endpoints" / endpoint.name / "journal.db"
    campaign = Campaign(service, endpoint.endpoint_id, runs, journal=journal)
    half = TASKS // 2
    campaign.submit(half)
    campaign.wait_for(half // 4)
    private_broker.do("kill")
    assert campaign.finished() < half, "the first half ended before the kill: make it longer"

    stored: list[str] = []
    with pytest.raises(ServiceUnavailableError) as refused:
        campaign.submit(TASKS - half, first=half, batch=TASKS)  # one request: one 503
    stored = refused.value.details["task_ids"]
    assert len(stored) == TASKS - half
    campaign.record(stored, range(half, TASKS))

    private_broker.do("start")
    campaign.wait_for(TASKS)
    print(f"rabbitmq kill -9 + restart: {campaign.verdict()}")
