"""RabbitMQ faults short of a crash: a service killed before the confirms, a frozen broker, a
disk alarm.  Each on a private node (tests/fixtures/rabbitmq_private.sh); counted as in every
crash test (one terminal result per task, right values), and here also *nothing twice*: every
task ran exactly once (its side-effect files).

* Killed before the confirms: the node is frozen (SIGSTOP), so a submit stores its tasks and
  then waits for confirms that never come; the service is killed (SIGKILL) right then.  The
  node resumes (it may still take the publishes it had buffered), the service restarts on the
  same database: its sweeper publishes the stored, unconfirmed tasks -- a second copy of a
  message the broker did take is recognised by the endpoint's journal.  SQLite and PostgreSQL.
* Frozen broker: SIGSTOP for longer than the connections' heartbeats (2 s here: the service's
  ingest and the endpoint log the lost connection), then SIGCONT; everyone reconnects.
* Disk alarm: ``rabbitmqctl set_disk_free_limit`` above the free space blocks publishers; a
  submit made meanwhile stores its tasks and waits (or answers 503 naming them); once the limit
  is lowered the campaign completes.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from outpost.errors import ServiceUnavailableError

from ..e2e.stack import RunningEndpoint, RunningService, make_endpoint, start_service
from .campaign import TASKS, Campaign, database, kill_process, wait_until, work
from .conftest import BOTH_DATABASES, PrivateBroker, stop

HEARTBEAT = 2  # seconds, for the frozen-broker test


@pytest.fixture
def fault_stack(
    private_broker: PrivateBroker, tmp_path: Path, service_home: Path, service_database: str
) -> Iterator[tuple[RunningService, RunningEndpoint, Campaign]]:
    url = f"{private_broker.url}?heartbeat={HEARTBEAT}"
    env = {"OUTPOST_REPUBLISH_AFTER": "1", "OUTPOST_BROKER_AUTH": "shared"}
    service = start_service(service_home, service_database, amqp_url=url, env_extra=env)

    def short_heartbeats(config: dict[str, Any]) -> None:
        config["amqp_url"] = url

    endpoint = make_endpoint(service, tmp_path / "endpoint", "faults", edit=short_heartbeats)
    runs = tmp_path / "runs"
    runs.mkdir()
    journal = endpoint.home / "endpoints" / endpoint.name / "journal.db"
    campaign = Campaign(service, endpoint.endpoint_id, runs, journal=journal)
    yield service, endpoint, campaign
    endpoint.run("stop", endpoint.name, check=False, timeout=180)
    stop(campaign.service, shared_broker=False)


def ran_once_each(campaign: Campaign) -> dict[str, int]:
    counts = campaign.verdict()
    twice = [i for i, n in campaign.runs_per_task().items() if n != 1]
    assert not twice, f"{len(twice)} task(s) ran more than once: {twice[:10]}"
    return counts


def stored_unpublished(campaign: Campaign, request_id: str) -> list[str]:
    """The ids of the request's tasks the service stored, in submission order."""
    with database(campaign.service).connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT task_id FROM tasks WHERE request_id = :r AND NOT published ORDER BY seq"
                ),
                {"r": request_id},
            ).scalars()
        )


@BOTH_DATABASES
def test_service_killed_before_the_broker_confirms(
    fault_stack: tuple[RunningService, RunningEndpoint, Campaign], private_broker: PrivateBroker
) -> None:
    service, _endpoint, campaign = fault_stack
    client = campaign.client()
    campaign.function_id = client.register_function(work)
    client.close()
    count = min(TASKS, 500)
    request_id = f"unconfirmed-{uuid.uuid4()}"
    body = {"tasks": [campaign._task(i, -1) for i in range(count)], "request_id": request_id}
    answers: list[Any] = []

    def submit() -> None:
        try:
            headers = {"Authorization": f"Bearer {service.token}"}
            url = f"{service.url}/v1/tasks"
            answers.append(requests.post(url, json=body, timeout=300, headers=headers))
        except requests.RequestException as exc:  # the service is killed under it
            answers.append(exc)

    private_broker.freeze()
    submitter = threading.Thread(target=submit)
    submitter.start()
    wait_until(lambda: len(stored_unpublished(campaign, request_id)) == count, 60,
               f"{count} stored, unconfirmed tasks")  # fmt: skip
    kill_process(service.process)
    submitter.join(60)
    assert isinstance(answers[0], requests.RequestException), answers  # never answered
    campaign.record(stored_unpublished(campaign, request_id), range(count))
    private_broker.thaw()

    restarted = start_service(
        service.home, service.database_url, user=None, prefix=service.amqp_prefix,
        amqp_url=f"{private_broker.url}?heartbeat={HEARTBEAT}",
        env_extra={"OUTPOST_REPUBLISH_AFTER": "1", "OUTPOST_BROKER_AUTH": "shared"},
    )  # fmt: skip
    restarted.token, restarted.endpoint_ids = service.token, service.endpoint_ids
    campaign.service = restarted
    campaign.wait_for(count)
    print(f"service killed before the confirms: {ran_once_each(campaign)}")
    assert not stored_unpublished(campaign, request_id)


def test_frozen_broker_longer_than_heartbeats(
    fault_stack: tuple[RunningService, RunningEndpoint, Campaign], private_broker: PrivateBroker
) -> None:
    service, endpoint, campaign = fault_stack
    log = endpoint.home / "endpoints" / endpoint.name / "endpoint.log"
    half = TASKS // 2
    campaign.submit(half)
    campaign.wait_for(half // 4)
    private_broker.freeze()
    try:
        assert campaign.finished() < half, "the first half ended before the freeze"
        wait_until(lambda: "ingest lost RabbitMQ" in "".join(service.output), 60,
                   "the service's ingest to notice the missed heartbeats")  # fmt: skip
        wait_until(lambda: "lost RabbitMQ" in log.read_text(), 60,
                   "the endpoint to notice the missed heartbeats")  # fmt: skip
    finally:
        private_broker.thaw()
    campaign.submit(TASKS - half, first=half)
    campaign.wait_for(TASKS)
    print(f"frozen broker: {ran_once_each(campaign)}")


def test_disk_alarm_blocks_publishers_until_it_clears(
    fault_stack: tuple[RunningService, RunningEndpoint, Campaign],
    private_broker: PrivateBroker,
    tmp_path: Path,
) -> None:
    _service, _endpoint, campaign = fault_stack
    half = TASKS // 2
    campaign.submit(half)
    campaign.wait_for(half // 4)

    free = shutil.disk_usage(private_broker.root).free
    private_broker.do("ctl", "set_disk_free_limit", str(free * 4))
    wait_until(lambda: "resource_limit,disk" in alarms(private_broker), 60, "the disk alarm")
    outcome: list[BaseException | None] = []

    def submit() -> None:
        try:
            campaign.submit(TASKS - half, first=half, batch=TASKS)  # one request
            outcome.append(None)
        except ServiceUnavailableError as exc:  # a 503 naming the stored tasks is fine too
            campaign.record(exc.details["task_ids"], range(half, TASKS))
            outcome.append(exc)

    before = stored(campaign)
    submitter = threading.Thread(target=submit)
    submitter.start()
    wait_until(lambda: stored(campaign) >= before + TASKS - half, 60, "the blocked submit stored")
    assert submitter.is_alive() or outcome, "the submit neither waited nor answered"
    private_broker.do("ctl", "set_disk_free_limit", "1MB")
    wait_until(lambda: "disk" not in alarms(private_broker), 60, "the alarm to clear")
    submitter.join(300)
    assert not submitter.is_alive()
    campaign.wait_for(TASKS)
    print(f"disk alarm ({outcome}): {ran_once_each(campaign)}")


def stored(campaign: Campaign) -> int:
    with database(campaign.service).connect() as conn:
        return int(conn.execute(sa.text("SELECT COUNT(*) FROM tasks")).scalar_one())


def alarms(broker: PrivateBroker) -> str:
    """The node's resource alarms, e.g. ``[{{resource_limit,disk,'test-1@localhost'},[]}]``."""
    return broker.do("ctl", "eval", "rabbit_alarm:get_alarms().")
