"""PostgreSQL crashing mid-campaign (``pg_ctl restart -m immediate``, then an immediate stop
held long enough to be seen): clients get 503, never 500; the service recovers by itself;
every task's result arrives exactly once.

The service (one process, never restarted) runs on a PRIVATE cluster
(tests/fixtures/postgres_private.py: the shared server is never touched) and the endpoint
(high-throughput engine) on the shared broker.  A watcher thread keeps asking the service
throughout -- reading a task, collecting results, ``/ready`` -- and records every status.
Counted: no answer was 500 (nor any other 5xx than 503), the service log has no unhandled
error, ``/metrics`` counted no 500, ``/ready`` said the database was not reachable while it was
down and ready again after, ``/health`` stayed 200, and the campaign's verdict (every task one
terminal result, the right value) holds, results that arrived during the outage included
(ingest returned them to the queue instead of acknowledging them unstored).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from ..e2e.stack import RunningEndpoint, RunningService, make_endpoint, start_service
from .campaign import TASKS, Campaign, wait_until
from .conftest import PrivatePostgres, stop

METRICS_TOKEN = f"metrics-{uuid.uuid4().hex}"


@pytest.fixture
def crash_stack(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> Iterator[tuple[RunningService, RunningEndpoint]]:
    service = start_service(
        tmp_path / "service",
        private_postgres.url("outpost"),
        env_extra={"OUTPOST_METRICS_TOKEN": METRICS_TOKEN},
    )
    endpoint = make_endpoint(service, tmp_path / "endpoint", f"pgc{uuid.uuid4().hex[:6]}")
    yield service, endpoint
    endpoint.run("stop", endpoint.name, check=False)
    stop(service, shared_broker=True)


class Watcher:
    """Asks the service over and over from a thread; records every (route, status)."""

    def __init__(self, service: RunningService, task_id: str) -> None:
        self.service, self.task_id = service, task_id
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.unready: list[dict[str, object]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def seen(self, route: str, status: int) -> bool:
        return self.statuses[route, status] > 0

    def no_server_errors(self) -> bool:
        """True, or AssertionError naming every 5xx answer other than 503 seen so far."""
        bad = {key: n for key, n in self.statuses.items() if key[1] >= 500 and key[1] != 503}
        assert not bad, f"the service answered server errors: {bad}"
        return True

    def _run(self) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.service.token}"
        url = self.service.url
        while not self._stop.is_set():
            asks = [
                ("task", lambda: session.get(f"{url}/v1/tasks/{self.task_id}", timeout=60)),
                (
                    "results",
                    lambda: session.post(
                        f"{url}/v1/results",
                        json={"task_ids": [self.task_id], "wait": 0},
                        timeout=60,
                    ),
                ),
                ("ready", lambda: requests.get(f"{url}/ready", timeout=60)),
                ("health", lambda: requests.get(f"{url}/health", timeout=60)),
            ]
            for route, ask in asks:
                answer = ask()
                self.statuses[route, answer.status_code] += 1
                if route == "ready" and answer.status_code == 503:
                    self.unready.append(answer.json()["error"]["details"])
            time.sleep(0.05)  # the pace of the questions, not a synchronisation


def scrape(service: RunningService) -> list[Sample]:
    page = requests.get(
        f"{service.url}/metrics",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
        timeout=60,
    )
    assert page.status_code == 200, page.text
    return [s for family in text_string_to_metric_families(page.text) for s in family.samples]


def ingest_failures(service: RunningService) -> float:
    return sum(s.value for s in scrape(service) if s.name == "outpost_ingest_store_failures_total")


def server_errors(service: RunningService) -> dict[str, float]:
    """Requests the service answered with 5xx other than 503, by route (its /metrics)."""
    found: dict[str, float] = {}
    for sample in scrape(service):
        status = sample.labels.get("status", "")
        if sample.name.endswith("_count") and status.startswith("5") and status != "503":
            found[f"{sample.labels['route']} {status}"] = sample.value
    return found


def test_postgresql_crash_restart_mid_campaign(
    crash_stack: tuple[RunningService, RunningEndpoint],
    private_postgres: PrivatePostgres,
    tmp_path: Path,
) -> None:
    service, endpoint = crash_stack
    runs = tmp_path / "runs"
    runs.mkdir()
    journal = endpoint.home / "endpoints" / endpoint.name / "journal.db"
    campaign = Campaign(service, endpoint.endpoint_id, runs, journal=journal)
    half = TASKS // 2
    campaign.submit(half)
    campaign.wait_for(half // 4)

    with Watcher(service, campaign.task_ids[0]) as watcher:
        # 1. A crash and immediate restart: every pooled connection is dead afterwards.
        private_postgres.restart("immediate")
        # 2. The rest of the campaign is submitted; then the database crashes again and stays
        #    down until the service has been seen answering 503 and /ready saying why.
        campaign.submit(TASKS - half, first=half)
        private_postgres.stop("immediate")
        wait_until(
            lambda: (
                watcher.no_server_errors()
                and watcher.seen("task", 503)
                and watcher.seen("ready", 503)
            ),
            60,
            "503 answers while the database is down",
        )
        # Ingest got reports it could not store (results, or at least a heartbeat) and put
        # them back instead of acknowledging them; /metrics answers meanwhile.
        wait_until(
            lambda: ingest_failures(service) > 0, 60, "ingest to meet the database's absence"
        )
        private_postgres.start()
        wait_until(
            lambda: requests.get(f"{service.url}/ready", timeout=60).status_code == 200,
            60,
            "/ready to be 200 again",
        )
        campaign.wait_for(TASKS)

    print(f"postgresql crash: {campaign.verdict()}; answers {dict(watcher.statuses)}")
    assert service.process.poll() is None, "the service died instead of riding it out"
    assert watcher.no_server_errors()
    assert not watcher.seen("health", 503), "liveness must not depend on the database"
    assert any(
        not details["database"]["ok"] and details["broker"]["ok"]  # type: ignore[index]
        for details in watcher.unready
    ), watcher.unready[:3]
    log = "".join(service.output)
    assert "unhandled error" not in log, log[-4000:]
    assert "ingest cannot reach the database" in log
    assert server_errors(service) == {}
    assert watcher.seen("task", 200) and watcher.seen("ready", 200)
