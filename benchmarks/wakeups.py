"""Cross-process wake-ups and cheap waiting (broker/wakeups.py, longpoll.py), on PostgreSQL.

1. Result latency, single-process vs cross-process, in the same run on one database: a client
   long-polls for one task; once the poll waits, the task's result is published to RabbitMQ as
   an endpoint would.  *Single*: ``serve`` with its in-process ingest.  *Cross*: the poll waits
   in a ``serve --no-ingest`` API process and a separate ``outpost-service ingest`` process
   stores the result.  Reported per setup: commit -> answer (the client's clock at the answer
   minus the task's ``completed_at``, written in the committing transaction: the wake-up path)
   and publish -> answer (adds ingest's batching: a standalone ingest does not know which
   results an API process's polls wait for, so a lone result waits up to its 50 ms batch age).
2. 1,000 waiters: 100 users x 10 long-polls (the per-user cap) wait at once on one API process
   (seen through the cap: a probe of each user is refused); user B's sequential
   ``GET /v1/endpoints`` / ``GET /health`` p50/p99 on the quiet process and with the 1,000
   waiting; the API process's RSS both times; then the 1,000 results are published and the time
   until every poll has answered is reported.
"""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pika
import requests
import sqlalchemy as sa

from benchmarks.common import percentiles, show
from outpost.protocol import ResultEnvelope, TaskState, serialize, serialize_function
from outpost_service.store import Database
from outpost_service.store.schema import tasks
from outpost_service.store.users import get_or_create_user, issue_token
from tests.service.conftest import AMQP_URL, POSTGRES_ADMIN_URL
from tests.service.test_server import SERVICE, Server, cleanup, service_env, start

LISTENING = r"outpost-service listening on (http://\S+)"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _session(token: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def _submit(url: str, token: str, count: int) -> tuple[str, list[str]]:
    session = _session(token)

    def call(path: str, body: Any) -> Any:
        response = session.post(f"{url}{path}", json=body, timeout=60)
        response.raise_for_status()
        return response.json()

    endpoint_id = call("/v1/endpoints", {"name": f"ep-{secrets.token_hex(3)}"})["endpoint_id"]
    function_id = call("/v1/functions", {"function": _b64(serialize_function(abs))})["function_id"]
    task = {
        "function_id": function_id,
        "endpoint_id": endpoint_id,
        "args": _b64(serialize(((1,), {}))),
    }
    return endpoint_id, call("/v1/tasks", {"tasks": [task] * count})["task_ids"]


def _publish(channel: Any, prefix: str, endpoint_id: str, task_ids: list[str]) -> None:
    for task_id in task_ids:
        result = ResultEnvelope(task_id, endpoint_id, TaskState.SUCCESS, value=serialize(1))
        channel.basic_publish(f"{prefix}.results", f"{endpoint_id}.result", result.to_bytes())


def _round_trips(
    server: Server, token: str, endpoint_id: str, task_ids: list[str], channel: Any, prefix: str
) -> list[tuple[float, float]]:
    """For each task: a waiting poll, then its result published; (publish time, answer time)."""
    session = _session(token)
    times: list[tuple[float, float]] = []
    for task_id in task_ids:
        answered: list[float] = []

        def poll(t: str = task_id, answered: list[float] = answered) -> None:
            body = {"task_ids": [t], "wait": 30}
            answer = session.post(f"{server.url}/v1/results", json=body, timeout=60)
            answered.append(time.time())
            assert answer.json()["results"], answer.text

        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(0.05)  # the poll is waiting by then (a benchmark, not a test)
        published = time.time()
        _publish(channel, prefix, endpoint_id, [task_id])
        poller.join(60)
        times.append((published, answered[0]))
    return times


def _latencies(
    database: Database, times: list[tuple[float, float]], task_ids: list[str]
) -> dict[str, Any]:
    with database.read() as conn:
        rows = conn.execute(
            sa.select(tasks.c.task_id, tasks.c.completed_at).where(tasks.c.task_id.in_(task_ids))
        ).all()
    committed = {row.task_id: float(row.completed_at) for row in rows}
    return {
        "commit_to_answer_ms": percentiles(
            [(a - committed[t]) * 1000 for t, (_, a) in zip(task_ids, times, strict=True)]
        ),
        "publish_to_answer_ms": percentiles([(a - p) * 1000 for p, a in times]),
    }


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0])


def _b_latencies(url: str, token: str, count: int) -> list[float]:
    session = _session(token)
    samples = []
    for i in range(count):
        path = "/v1/endpoints" if i % 2 == 0 else "/health"
        start = time.perf_counter()
        session.get(f"{url}{path}", timeout=60).raise_for_status()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def _waiting(url: str, token: str, task_id: str) -> bool:
    answer = _session(token).post(
        f"{url}/v1/results", json={"task_ids": [task_id], "wait": 0.2}, timeout=30
    )
    return answer.status_code == 429 and "too_many_long_polls" in answer.text


def _thousand_waiters(
    server: Server,
    database: Database,
    channel: Any,
    prefix: str,
    users: int,
    per_user: int,
    count: int,
) -> dict[str, Any]:
    with database.write() as conn:
        tokens = [issue_token(conn, get_or_create_user(conn, f"w{i}")) for i in range(users)]
        token_b = issue_token(conn, get_or_create_user(conn, "bob"))
    _submit(server.url, token_b, 1)
    work = [(token, *_submit(server.url, token, per_user)) for token in tokens]
    _b_latencies(server.url, token_b, 20)  # warm-up
    quiet = _b_latencies(server.url, token_b, count)
    rss_quiet = _rss_kib(server.process.pid)
    address = urlsplit(server.url)
    answers: list[int] = []
    refused: list[str] = []
    done = threading.Event()
    total = users * per_user

    def poll(token: str, task_id: str) -> None:
        body = json.dumps({"task_ids": [task_id], "wait": 60})
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        while True:
            connection = http.client.HTTPConnection(address.hostname, address.port, 120)
            connection.request("POST", "/v1/results", body, headers)
            response = connection.getresponse()
            text = response.read().decode()
            connection.close()
            if response.status != 429:
                answers.append(response.status if '"pending":[]' in text else -1)
                if len(answers) == total:
                    done.set()
                return
            refused.append(text)  # a probe held the user's slot: again, as the SDK does
            time.sleep(float(response.getheader("Retry-After") or 1))

    for token, _, task_ids in work:
        for task_id in task_ids:
            threading.Thread(target=poll, args=(token, task_id), daemon=True).start()
    for token, _, task_ids in work:
        while not _waiting(server.url, token, task_ids[0]):
            pass
    rss_waiting = _rss_kib(server.process.pid)
    loaded = _b_latencies(server.url, token_b, count)
    start = time.perf_counter()
    for _, endpoint_id, task_ids in work:
        _publish(channel, prefix, endpoint_id, task_ids)
    done.wait(120)
    drained = time.perf_counter() - start
    return {
        "waiters": total,
        "b_quiet_ms": percentiles(quiet),
        "b_with_waiters_ms": percentiles(loaded),
        "rss_quiet_mib": rss_quiet / 1024,
        "rss_waiting_mib": rss_waiting / 1024,
        "answered_with_result": answers.count(200),
        "refused_by_the_pool": sum("long_polls_busy" in r for r in refused),
        "all_answered_s": drained,
    }


def measure(round_trips: int = 200, users: int = 100, per_user: int = 10, count: int = 400) -> Any:
    name = f"outpost_bench_wake_{secrets.token_hex(4)}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    database_url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    prefix = f"bench-wake-{secrets.token_hex(4)}"
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    database = Database(database_url)
    servers: list[Server] = []
    result: dict[str, Any] = {"round_trips": round_trips}
    try:
        with tempfile.TemporaryDirectory(prefix="outpost-wake-") as tmp:
            env = service_env(database_url, prefix, Path(tmp))
            env.update(OUTPOST_BROKER_AUTH="shared", OUTPOST_LONGPOLL_PER_USER=str(per_user))
            subprocess.run([SERVICE, "init-db"], env=env, check=True, timeout=60)
            with database.write() as conn:
                token = issue_token(conn, get_or_create_user(conn, "alice"))
            # single process: serve with its in-process ingest
            single = start(["serve", "--port", "0"], env, LISTENING)
            servers.append(single)
            endpoint_id, task_ids = _submit(single.url, token, 2 * round_trips)
            _round_trips(single, token, endpoint_id, task_ids[:5], channel, prefix)  # warm-up
            first = task_ids[5:round_trips]
            times = _round_trips(single, token, endpoint_id, first, channel, prefix)
            result["single"] = _latencies(database, times, first)
            single.stop()
            # cross process: an API process without ingest, and an ingest process
            api = start(["serve", "--port", "0", "--no-ingest"], env, LISTENING)
            servers.append(api)
            servers.append(start(["ingest"], env, r"ingest consuming"))
            second = task_ids[round_trips + 5 :]
            _round_trips(
                api, token, endpoint_id, task_ids[round_trips : round_trips + 5], channel, prefix
            )
            times = _round_trips(api, token, endpoint_id, second, channel, prefix)
            result["cross"] = _latencies(database, times, second)
            result["thousand"] = _thousand_waiters(
                api, database, channel, prefix, users, per_user, count
            )
    finally:
        connection.close()
        database.dispose()
        cleanup(servers, database_url, prefix)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return result


def report(result: dict[str, Any]) -> None:
    def line(stats: dict[str, float]) -> str:
        return f"p50 {stats['p50']:.1f} ms  p99 {stats['p99']:.1f} ms  (n={stats['n']})"

    rows = []
    for setup in ("single", "cross"):
        rows.append((f"{setup}: commit -> answer", line(result[setup]["commit_to_answer_ms"])))
        rows.append((f"{setup}: publish -> answer", line(result[setup]["publish_to_answer_ms"])))
    show("result latency, one PostgreSQL database (single- vs cross-process)", rows)
    many = result["thousand"]
    show(
        f"{many['waiters']} waiting long-polls on one API process",
        [
            ("B quiet", line(many["b_quiet_ms"])),
            ("B with the waiters", line(many["b_with_waiters_ms"])),
            (
                "API process RSS",
                f"{many['rss_quiet_mib']:.0f} -> {many['rss_waiting_mib']:.0f} MiB",
            ),
            ("answered with their result", f"{many['answered_with_result']}"),
            ("refused by the pool (429)", f"{many['refused_by_the_pool']}"),
            ("all answered after publishing", f"{many['all_answered_s']:.2f} s"),
        ],
    )


if __name__ == "__main__":
    report(measure())
