"""PostgreSQL restarted mid-campaign: 503 while it is away, never 500; nothing lost after.

The service runs on a PRIVATE PostgreSQL cluster (tests/fixtures/postgres_private.py; the
shared server is never touched) with the endpoint (high-throughput engine) on the shared
broker.  Once a quarter of the campaign is stored the cluster is stopped (fast shutdown: every
open connection of the service breaks).  While it is down: reading a task and submitting
answer 503 ``database_unavailable`` with ``Retry-After`` (raw HTTP, several times), and an SDK
submit started meanwhile keeps retrying under its one request id.  Then the cluster starts
again -- the service process is the same one, never restarted.  Counted: the SDK submit got
its ids, every task of the campaign and of that submit has exactly one terminal result with the
right value (results that arrived while the database was away were put back on the queue by
ingest, not dropped), and the service still runs.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ..e2e.stack import RunningEndpoint, RunningService, make_endpoint, start_service
from .campaign import TASKS, Campaign, wait_until
from .conftest import PrivatePostgres, stop


@pytest.fixture
def pg_stack(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> Iterator[tuple[RunningService, RunningEndpoint]]:
    service = start_service(tmp_path / "service", private_postgres.url("outpost"))
    endpoint = make_endpoint(service, tmp_path / "endpoint", f"pg{uuid.uuid4().hex[:6]}")
    yield service, endpoint
    endpoint.run("stop", endpoint.name, check=False)
    stop(service, shared_broker=True)


def _get(service: RunningService, path: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {service.token}"}
    return requests.get(service.url + path, headers=headers, timeout=60)


def _post(service: RunningService, path: str, body: object) -> requests.Response:
    headers = {"Authorization": f"Bearer {service.token}"}
    return requests.post(service.url + path, json=body, headers=headers, timeout=60)


def assert_503(answer: requests.Response) -> None:
    assert answer.status_code == 503, (answer.status_code, answer.text)
    error = answer.json()["error"]
    assert error["code"] == "database_unavailable", error
    assert "retry" in error["message"] and answer.headers["Retry-After"].isdigit()


def test_postgresql_restart_mid_campaign(
    pg_stack: tuple[RunningService, RunningEndpoint],
    private_postgres: PrivatePostgres,
    tmp_path: Path,
) -> None:
    service, endpoint = pg_stack
    runs = tmp_path / "runs"
    runs.mkdir()
    journal = endpoint.home / "endpoints" / endpoint.name / "journal.db"
    campaign = Campaign(service, endpoint.endpoint_id, runs, journal=journal)
    half = TASKS // 2
    campaign.submit(half)
    campaign.wait_for(half // 4)
    private_postgres.stop()
    assert not private_postgres.running()

    task_id = campaign.task_ids[0]
    late = Campaign(service, endpoint.endpoint_id, runs, function_id=campaign.function_id)
    for _ in range(3):  # every request while it is away: 503, never 500
        assert_503(_get(service, f"/v1/tasks/{task_id}"))
        assert_503(_post(service, "/v1/results", {"task_ids": [task_id], "wait": 0}))
        body = {"tasks": [late._task(half, -1)], "request_id": f"raw-{uuid.uuid4()}"}
        assert_503(_post(service, "/v1/tasks", body))

    # An SDK submit made while the database is away waits (retries, one request id) ...
    errors: list[BaseException] = []

    def submit_late() -> None:
        try:
            late.submit(TASKS - half, first=half, batch=TASKS)
        except BaseException as exc:  # reported below
            errors.append(exc)

    submitter = threading.Thread(target=submit_late)
    submitter.start()
    wait_until(lambda: "database unavailable" in "".join(service.output), 30, "a 503 logged")
    private_postgres.start()  # ... and gets its ids once it is back
    submitter.join(300)
    assert not submitter.is_alive() and not errors, errors
    campaign.record(late.task_ids, range(half, TASKS))

    campaign.wait_for(TASKS)
    print(f"postgresql restart: {campaign.verdict()}")
    assert service.process.poll() is None, "the service died instead of riding it out"
    assert _get(service, f"/v1/tasks/{task_id}").json()["state"] == "success"
