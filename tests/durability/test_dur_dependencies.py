"""kill -9 of the service in the middle of a DAG the service holds loses nothing.

The submitting process (docs/examples/dag.py) exits right after submitting 1,000 tasks on three
levels; the service is killed once part of them succeeded and restarted on the same database
and AMQP prefix.  Children released by results committed before the kill but not yet published
are published by the restarted service's sweeper; results the dead process had not acked are
redelivered.  Every task must end with the right value.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from outpost import Client, Executor

from ..e2e.stack import RunningEndpoint, RunningService, start_service
from .campaign import database, kill_process, wait_until
from .conftest import BOTH_DATABASES

pytestmark = BOTH_DATABASES

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "dag.py"
WIDTH = 400  # 400 + 400 + 200 tasks


def succeeded(service: RunningService) -> int:
    with database(service).connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM tasks WHERE state = 'success'"))
        return int(count.scalar_one())


def test_kill_9_service_mid_dag(service: RunningService, endpoint: RunningEndpoint) -> None:
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), endpoint.endpoint_id, str(WIDTH)],
        env=service.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    group = run.stdout.strip().splitlines()[-1]
    wait_until(lambda: succeeded(service) >= WIDTH // 2, 300, "part of the DAG to succeed")
    kill_process(service.process)
    assert succeeded(service) < 2.5 * WIDTH, "the DAG ended before the kill: make it longer"
    restarted = start_service(
        service.home,
        service.database_url,
        user=None,
        prefix=service.amqp_prefix,
        env_extra={"OUTPOST_REPUBLISH_AFTER": "2"},
    )
    restarted.token, restarted.endpoint_ids = service.token, service.endpoint_ids
    service.process = restarted.process  # the fixture stops whatever runs now
    client = Client(url=restarted.url, token=service.token)
    with Executor(task_group_id=group, client=client) as ex:
        futures = ex.reload_tasks()
        assert len(futures) == 2.5 * WIDTH
        _done, not_done = concurrent.futures.wait(futures, timeout=400)
        assert not not_done, f"{len(not_done)} task(s) never finished"
    assert [f.result() for f in futures[WIDTH : 2 * WIDTH]] == [i * i for i in range(WIDTH)]
    sums = [f.result() for f in futures[2 * WIDTH :]]
    assert sums == [i * i + (i + 1) * (i + 1) for i in range(0, WIDTH, 2)]
