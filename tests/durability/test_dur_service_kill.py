"""kill -9 of the service process, or of a separate ingest consumer, loses no result.

Both run on SQLite and on PostgreSQL (a fresh database on the shared server).  Killed:
``outpost-service serve`` (HTTP + ingest in one process), or, in the split deployment,
the ``outpost-service ingest`` process beside ``serve --no-ingest``, with SIGKILL once a third of
the campaign is stored.  Restarted on the same database and AMQP prefix.  Counted: every task
has exactly one terminal result with the right value (ingest acks a result only after its commit,
so what the dead process held unacked is redelivered to the new one).
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..e2e.stack import RunningEndpoint, RunningService, cli, start_service
from .campaign import TASKS, Campaign, kill_process
from .conftest import BOTH_DATABASES

pytestmark = BOTH_DATABASES  # each crash test runs on SQLite and on PostgreSQL


def test_kill_9_service_mid_campaign(
    campaign: Campaign, service: RunningService, endpoint: RunningEndpoint
) -> None:
    campaign.submit(TASKS)
    campaign.wait_for(TASKS // 3)
    kill_process(service.process)
    assert campaign.finished() < TASKS, "the campaign ended before the kill: make it longer"
    restarted = start_service(
        service.home, service.database_url, user=None, prefix=service.amqp_prefix
    )
    restarted.token, restarted.endpoint_ids = service.token, service.endpoint_ids
    service.process = restarted.process  # the fixture stops whatever runs now
    campaign.service = restarted
    campaign.wait_for(TASKS)
    print(f"service kill -9: {campaign.verdict()}")
    campaign.submit(10, first=TASKS)  # the restarted service takes new work too
    campaign.wait_for(TASKS + 10)
    campaign.verdict()


def start_ingest(service: RunningService) -> subprocess.Popen[str]:
    env = dict(
        os.environ,
        OUTPOST_HOME=str(service.home),
        PYTHONUNBUFFERED="1",
        OUTPOST_AMQP_URL=amqp_url(service),  # a secret: from the environment, not argv
    )
    argv = [cli("outpost-service"), "ingest", "--database-url", service.database_url]
    argv += ["--amqp-prefix", service.amqp_prefix]
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    said: list[str] = []  # warnings may come first; "ingest consuming" once it consumes
    while not said or ("ingest consuming" not in said[-1] and said[-1]):
        said.append(process.stdout.readline())
    assert "ingest consuming" in said[-1], "".join(said)
    # Keep reading its log, so a full pipe never blocks it.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return process


def amqp_url(service: RunningService) -> str:
    argv = service.process.args
    assert isinstance(argv, list)
    return str(argv[argv.index("--amqp-url") + 1])


@pytest.fixture
def split_service(service_home: Path, service_database: str) -> Iterator[RunningService]:
    """``serve --no-ingest`` (the ingest runs as its own process in the test)."""
    from .conftest import stop

    running = start_service(service_home, service_database, extra=("--no-ingest",))
    yield running
    stop(running, shared_broker=True)


def test_kill_9_ingest_consumer_mid_campaign(split_service: RunningService, tmp_path: Path) -> None:
    from ..e2e.stack import make_endpoint

    endpoint = make_endpoint(split_service, tmp_path / "endpoint", "split")
    ingest = start_ingest(split_service)
    try:
        runs = tmp_path / "runs"
        runs.mkdir()
        campaign = Campaign(split_service, endpoint.endpoint_id, runs)
        campaign.submit(TASKS)
        campaign.wait_for(TASKS // 3)
        kill_process(ingest)
        assert campaign.finished() < TASKS, "the campaign ended before the kill"
        ingest = start_ingest(split_service)
        campaign.wait_for(TASKS)
        print(f"ingest kill -9: {campaign.verdict()}")
    finally:
        ingest.terminate()
        ingest.wait(30)
        endpoint.run("stop", endpoint.name, check=False)
