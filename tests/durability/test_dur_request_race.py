"""Concurrent identical submits (one ``request_id``) store one batch, on SQLite and PostgreSQL.

A client whose submit timed out retries it under the same request id while the first attempt may
still be running in the service.  Both must get the same task ids, and the database must hold
the batch once.  Here eight threads send the same batch at the same moment (a barrier releases
them) to a real ``outpost-service serve`` process, over HTTP, for several request ids; SQLite
serialises writers with ``BEGIN IMMEDIATE``, PostgreSQL with a transaction-scoped advisory lock
on the request id (``store.tasks.lock_request``).  Without the lock PostgreSQL stored the batch
up to eight times.
"""

# The service fixtures are imported below, so test arguments of the same names "redefine" them.
# ruff: noqa: F811

from __future__ import annotations

import base64
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from outpost.protocol import serialize, serialize_function
from outpost_service.store.schema import tasks

from ..e2e.stack import start_service, stop_service
from ..fixtures.postgres_private import PrivatePostgres, can_run_private_postgres, postgres_bin
from ..recipes import missing
from ..service.conftest import database_url, postgres_database  # noqa: F401

THREADS = 8
ROUNDS = 10
BATCH = 5


def _post(url: str, token: str, path: str, body: Any) -> requests.Response:
    return requests.post(
        url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=120
    )


def _send(
    url: str,
    token: str,
    body: dict[str, Any],
    barrier: threading.Barrier,
    answers: list[requests.Response],
) -> None:
    barrier.wait()  # every thread sends at the same moment
    answers.append(_post(url, token, "/v1/tasks", body))


def test_concurrent_submits_with_one_request_id_store_one_batch(
    database_url: str, tmp_path: Path
) -> None:
    race(database_url, tmp_path)


def test_concurrent_submits_on_a_postgresql_short_of_connections(tmp_path: Path) -> None:
    """The HTTP 500 this test once showed on the shared PostgreSQL under load: the server
    refused new connections ("sorry, too many clients already") and the request failed.  On
    a private cluster with 6 connection slots the same race now waits for a slot
    (``store.database._connect``) -- all 200 (before: 500s; with only the 503 mapping: 503s)."""
    problem = can_run_private_postgres()
    if problem is not None:
        missing("a private PostgreSQL cluster", problem)
    bin_dir = postgres_bin()
    assert bin_dir is not None
    cluster = PrivatePostgres(bin_dir, max_connections=6)
    try:
        cluster.start()
        race(cluster.create_database("outpost"), tmp_path)
    finally:
        cluster.remove()


def race(database_url: str, tmp_path: Path) -> None:
    service = start_service(tmp_path / "service", database_url)
    try:
        answer = _post(service.url, service.token, "/v1/endpoints", {"name": "race"})
        assert answer.status_code == 200, answer.text
        endpoint_id = answer.json()["endpoint_id"]
        service.endpoint_ids.append(endpoint_id)
        function = base64.b64encode(serialize_function(abs)).decode()
        answer = _post(service.url, service.token, "/v1/functions", {"function": function})
        function_id = answer.json()["function_id"]
        args = base64.b64encode(serialize(((-1,), {}))).decode()
        task = {"function_id": function_id, "endpoint_id": endpoint_id, "args": args}

        request_ids = [f"race-{uuid.uuid4()}" for _ in range(ROUNDS)]
        for request_id in request_ids:
            body = {"tasks": [task] * BATCH, "request_id": request_id}
            barrier = threading.Barrier(THREADS)
            answers: list[requests.Response] = []

            threads = [
                threading.Thread(
                    target=_send, args=(service.url, service.token, body, barrier, answers)
                )
                for _ in range(THREADS)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert [a.status_code for a in answers] == [200] * THREADS, (
                [a.text for a in answers],
                "".join(service.output[-60:]),  # the service's log: why a request failed
            )
            distinct = {tuple(a.json()["task_ids"]) for a in answers}
            assert len(distinct) == 1, f"{request_id}: {len(distinct)} different answers"

        service.process.terminate()  # its pool may hold every slot of a small server
        service.process.wait(30)
        engine = sa.create_engine(database_url)
        with engine.connect() as conn:
            stored = Counter(
                conn.execute(
                    sa.select(tasks.c.request_id).where(tasks.c.request_id.in_(request_ids))
                ).scalars()
            )
        engine.dispose()
        assert stored == dict.fromkeys(request_ids, BATCH)
    finally:
        stop_service(service)
