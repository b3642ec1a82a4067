"""RabbitMQ killed (SIGKILL) and restarted mid-campaign loses no task and doubles none.

Uses a private throwaway node (tests/fixtures/rabbitmq_private.sh) that the service and the
endpoint daemon both use.  Killed: the node's beam.smp, with SIGKILL, once a quarter of the
first half of the campaign is stored.  While it is down the second half is submitted: the
service stores those tasks and answers 503 naming them (the SDK retried under one request id
first); after the restart the sweeper publishes them.  Counted: every task of both halves has
exactly one terminal result with the right value; the endpoint, its result publisher and the
service's ingest all came back by themselves (reconnect with backoff).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from outpost.errors import ServiceUnavailableError

from ..e2e.stack import RunningEndpoint, RunningService, make_endpoint, start_service
from .campaign import TASKS, Campaign
from .conftest import BOTH_DATABASES, PrivateBroker, stop

pytestmark = BOTH_DATABASES


@pytest.fixture
def broker_stack(
    private_broker: PrivateBroker, tmp_path: Path, service_home: Path, service_database: str
) -> Iterator[tuple[RunningService, RunningEndpoint]]:
    service = start_service(
        service_home,
        service_database,
        amqp_url=private_broker.url,
        # the private node runs without the management plugin: no per-endpoint users
        env_extra={"OUTPOST_REPUBLISH_AFTER": "1", "OUTPOST_BROKER_AUTH": "shared"},
    )
    endpoint = make_endpoint(service, tmp_path / "endpoint", "brokerfault")
    yield service, endpoint
    endpoint.run("stop", endpoint.name, check=False, timeout=180)
    stop(service, shared_broker=False)


def test_rabbitmq_kill_9_and_restart_mid_campaign(
    broker_stack: tuple[RunningService, RunningEndpoint],
    private_broker: PrivateBroker,
    tmp_path: Path,
) -> None:
    service, endpoint = broker_stack
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
