"""One sweeper at a time per deployment, on SQLite and PostgreSQL, with real processes.

The deployment of ARCHITECTURE.md's "beyond one machine": ``outpost-service serve
--no-ingest`` (a web node) and two standalone ``outpost-service ingest`` consumers on one
database and broker; each runs a sweeper (republish + expiry).  Tasks stored but never
confirmed by RabbitMQ -- what a submit whose publish failed leaves -- are written straight into
the database, 3,000 at once, and no endpoint consumes the queue, so every message published
stays countable in it.

* All three sweep every second; the lease (``store/leases.py``) lets one process do it: the
  queue then holds each task exactly once, and one process logged the republishing.  (Without
  the lease this test saw the queue hold more messages than tasks: the three rounds overlap.)
* The lease holder is killed with SIGKILL and the web node stopped: the remaining ``ingest``
  takes the lapsed lease over, republishes new unconfirmed tasks (once each) and expires a task
  past its deadline -- a deployment of standalone ingest consumers keeps both chores.
"""

# The service fixtures are imported below, so test arguments of the same names "redefine" them.
# ruff: noqa: F811

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pika
import requests
import sqlalchemy as sa

from outpost.protocol import serialize, serialize_function
from outpost_service.jobs.sweep import LEASE_MIN_TTL
from outpost_service.store import Database
from outpost_service.store import tasks as task_store
from outpost_service.store.leases import holder_of
from outpost_service.store.schema import tasks, users

from ..e2e.stack import AMQP_URL, cli, start_service, stop_service
from ..service.conftest import database_url, postgres_database  # noqa: F401
from .campaign import wait_until

SETTINGS = {"OUTPOST_REPUBLISH_AFTER": "1"}  # sweep every second
FIRST, LATER = 3000, 200


@dataclass
class Process:
    """A service process whose output is collected line by line."""

    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def pump(self, ready: threading.Event, marker: str) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line)
            if marker in line:
                ready.set()
        ready.set()

    def republished(self) -> int:
        return sum(
            int(m.group(1))
            for line in self.lines
            if (m := re.search(r"republished (\d+) task", line))
        )


def start_ingest(database_url: str, prefix: str, home: Path) -> Process:
    env = dict(os.environ, OUTPOST_HOME=str(home), PYTHONUNBUFFERED="1", **SETTINGS)
    argv = [cli("outpost-service"), "ingest", "--database-url", database_url]
    argv += ["--amqp-url", AMQP_URL, "--amqp-prefix", prefix]
    popen = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    process, ready = Process(popen), threading.Event()
    threading.Thread(target=process.pump, args=(ready, "ingest consuming"), daemon=True).start()
    assert ready.wait(60) and popen.poll() is None, "".join(process.lines)
    return process


def queued(queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        declared = connection.channel().queue_declare(queue, passive=True)
        return int(declared.method.message_count)
    finally:
        connection.close()


def store_unconfirmed(
    database: Database, endpoint_id: str, function_id: str, count: int, **spec: float
) -> list[str]:
    """``count`` tasks as a submit whose publish failed leaves them, a minute old."""
    with database.write() as conn:
        owner = conn.execute(sa.select(users.c.user_id).where(users.c.name == "alice")).scalar()
        new = [
            task_store.NewTask(
                task_id=str(uuid.uuid4()),
                endpoint_id=endpoint_id,
                function_id=function_id,
                args=serialize(((i,), {})),
                resource_spec=dict(spec),
            )
            for i in range(count)
        ]
        task_store.insert_many(conn, int(owner), new, time.time() - 60)
    return [t.task_id for t in new]


def post(url: str, token: str, path: str, body: object) -> dict[str, str]:
    answer = requests.post(
        url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def lease_until(database: Database) -> float:
    with database.read() as conn:
        lease = holder_of(conn, "sweeper")
    return lease[1] if lease else 0.0


def wait_rounds(database: Database, rounds: int = 2) -> None:
    """Wait for ``rounds`` more sweep rounds (each renews the lease): time for a duplicate
    publish to show up in the queue, had there been one."""
    for _ in range(rounds):
        before = lease_until(database)
        wait_until(lambda b=before: lease_until(database) > b, 60, "a sweep round")


def unpublished(database: Database) -> int:
    with database.read() as conn:
        count = conn.execute(
            sa.select(sa.func.count())
            .select_from(tasks)
            .where(tasks.c.published.is_(False), tasks.c.state == "queued")
        ).scalar_one()
    return int(count)


def test_one_sweeper_at_a_time_and_ingest_alone_keeps_sweeping(
    database_url: str, tmp_path: Path
) -> None:
    service = start_service(
        tmp_path / "web", database_url, extra=("--no-ingest",), env_extra=SETTINGS
    )
    ingests: list[Process] = []
    database = Database(database_url)
    try:
        registration = post(service.url, service.token, "/v1/endpoints", {"name": "lease"})
        endpoint_id, queue = registration["endpoint_id"], registration["amqp"]["task_queue"]
        service.endpoint_ids.append(endpoint_id)
        function = base64.b64encode(serialize_function(abs)).decode()
        function_id = post(service.url, service.token, "/v1/functions", {"function": function})[
            "function_id"
        ]
        for n in (1, 2):
            ingests.append(start_ingest(database_url, service.amqp_prefix, tmp_path / f"i{n}"))

        # three sweepers, one lease: every stored task reaches the queue exactly once
        store_unconfirmed(database, endpoint_id, function_id, FIRST)
        wait_until(lambda: unpublished(database) == 0, 120, "the sweepers to publish every task")
        wait_until(lambda: queued(queue) >= FIRST, 60, "the messages")
        wait_rounds(database)
        assert queued(queue) == FIRST
        web = Process(service.process, service.output)
        counts = [p.republished() for p in (web, *ingests)]
        assert sorted(counts) == [0, 0, FIRST], counts

        # kill -9 the lease holder, stop the web node: the other ingest takes over
        with database.read() as conn:
            lease = holder_of(conn, "sweeper")
        assert lease is not None
        holder_pid = int(lease[0].split(":")[-2])
        by_pid = {p.popen.pid: p for p in (web, *ingests)}
        assert holder_pid in by_pid, (lease, list(by_pid))
        os.kill(holder_pid, signal.SIGKILL)
        by_pid[holder_pid].popen.wait(30)
        if holder_pid != service.process.pid:
            service.process.terminate()  # the web node goes away too (and releases nothing)
            service.process.wait(30)
        survivors = [p for p in ingests if p.popen.poll() is None]
        (expiring,) = store_unconfirmed(database, endpoint_id, function_id, 1, expires_after=5)
        later = store_unconfirmed(database, endpoint_id, function_id, LATER)
        wait_until(lambda: unpublished(database) == 0, LEASE_MIN_TTL + 60, "the takeover")
        with database.read() as conn:
            row = conn.execute(
                sa.select(tasks.c.state, tasks.c.result, tasks.c.published).where(
                    tasks.c.task_id == expiring
                )
            ).one()
            states = set(
                conn.execute(sa.select(tasks.c.state).where(tasks.c.task_id.in_(later))).scalars()
            )
        assert row.state == "failed" and b'"expired"' in bytes(row.result)
        assert states == {"queued"}
        wait_rounds(database)
        # One cancel message for the expired task (sent by the process that stored the expiry);
        # the task itself was published only if a round published it before expiring it.
        expected = FIRST + LATER + 1 + int(row.published)
        assert queued(queue) == expected
        assert sum(p.republished() for p in survivors) == LATER + int(row.published)
    finally:
        for process in ingests:
            if process.popen.poll() is None:
                process.popen.terminate()
                process.popen.wait(30)
        database.dispose()
        stop_service(service)
