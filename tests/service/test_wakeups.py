"""Cross-process wake-ups (broker/wakeups.py) and cheap waiting (longpoll.py), for real: two
``serve --no-ingest`` API processes and one ``ingest`` process on one PostgreSQL database and
RabbitMQ; and the channel itself against both, for its loss rules.

A poll is woken *by the notification* when the safety re-check is set to an hour: a poll that
nothing notified would answer ``pending`` when its ``wait`` ends, so an answer carrying the
result can only have come from the wake-up message.
"""

from __future__ import annotations

import http.client
import json
import resource
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pika
import pytest
import requests
import sqlalchemy as sa

from outpost.protocol import ResultEnvelope, TaskState, serialize, serialize_function
from outpost_service.broker.connection import target
from outpost_service.broker.topology import Topology
from outpost_service.broker.wakeups import WakeupChannel
from outpost_service.notifier import URGENT_MAX, ResultNotifier
from outpost_service.store import Database
from outpost_service.store import endpoints as endpoint_store
from outpost_service.store import functions as function_store
from outpost_service.store import tasks as task_store
from outpost_service.store.users import get_or_create_user, issue_token

from ..broker_cleanup import GUEST, MANAGEMENT_API
from .conftest import AMQP_URL, POSTGRES_ADMIN_URL, b64
from .test_server import SERVICE, Server, api, cleanup, service_env, start

LISTENING = r"outpost-service listening on (http://\S+)"
#: An hour: no safety re-check happens during a test, so only a wake-up message can answer.
NO_RECHECK = "3600"


def wait_until(
    condition: Callable[[], bool],
    what: str,
    timeout: float = 60,
    diagnose: Callable[[], str] = str,
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what} {diagnose()}"
        time.sleep(0.02)


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    """A PostgreSQL database of this test alone (several processes share it)."""
    name = f"outpost_wake_{secrets.token_hex(4)}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def split_env(database_url: str, amqp_prefix: str, home: Path, **settings: str) -> dict[str, str]:
    env = service_env(database_url, amqp_prefix, home)
    env.update(OUTPOST_BROKER_AUTH="shared", OUTPOST_WAKEUP_RECHECK=NO_RECHECK, **settings)
    subprocess.run([SERVICE, "init-db"], env=env, check=True, timeout=60, capture_output=True)
    return env


def submit(server: Server, token: str, count: int) -> tuple[str, list[str]]:
    """A new endpoint of the token's user and ``count`` tasks for it (never run)."""
    call = api(server, token)
    endpoint_id = call("POST", "/v1/endpoints", {"name": f"ep-{secrets.token_hex(3)}"})[
        "endpoint_id"
    ]
    function_id = call("POST", "/v1/functions", {"function": b64(serialize_function(abs))})[
        "function_id"
    ]
    task = {
        "function_id": function_id,
        "endpoint_id": endpoint_id,
        "args": b64(serialize(((1,), {}))),
    }
    task_ids = call("POST", "/v1/tasks", {"tasks": [task] * count})["task_ids"]
    return endpoint_id, task_ids


def report(channel: Any, prefix: str, endpoint_id: str, task_ids: list[str]) -> None:
    """Publish each task's result as its endpoint would."""
    for task_id in task_ids:
        result = ResultEnvelope(task_id, endpoint_id, TaskState.SUCCESS, value=serialize(1))
        channel.basic_publish(f"{prefix}.results", f"{endpoint_id}.result", result.to_bytes())


def poll_until_admitted(server: Server, token: str, task_ids: list[str], wait: float) -> Any:
    """A long-poll, sent again while it is refused 429 (a probe held the user's one slot)."""
    headers = {"Authorization": f"Bearer {token}"}
    body = {"task_ids": task_ids, "wait": wait}
    while True:
        answer = requests.post(f"{server.url}/v1/results", json=body, headers=headers, timeout=120)
        if answer.status_code != 429:
            return answer


def waiting(server: Server, token: str, task_ids: list[str]) -> bool:
    """Whether the user's one long-poll slot of ``server`` is held (longpoll_per_user=1)."""
    answer = requests.post(
        f"{server.url}/v1/results",
        json={"task_ids": task_ids, "wait": 0.2},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    return answer.status_code == 429 and "too_many_long_polls" in answer.text


def test_a_result_committed_by_the_ingest_process_wakes_polls_in_both_api_processes(
    fresh_postgres: str, amqp_prefix: str, amqp_channel: Any, tmp_path: Path
) -> None:
    env = split_env(fresh_postgres, amqp_prefix, tmp_path / "home", OUTPOST_LONGPOLL_PER_USER="1")
    servers: list[Server] = []
    try:
        api_a = start(["serve", "--port", "0", "--no-ingest"], env, LISTENING)
        servers.append(api_a)
        api_b = start(["serve", "--port", "0", "--no-ingest"], env, LISTENING)
        servers.append(api_b)
        servers.append(start(["ingest"], env, r"ingest consuming"))
        token = json.loads(api_a.cli("create-user", "erin", "--json").stdout)["token"]
        endpoint_id, (done_id, cancelled_id) = submit(api_a, token, 2)

        answers: dict[str, Any] = {}
        pollers = [
            threading.Thread(
                target=lambda s=server, n=name: answers.__setitem__(
                    n, poll_until_admitted(s, token, [done_id], 60)
                )
            )
            for name, server in (("a", api_a), ("b", api_b))
        ]
        for poller in pollers:
            poller.start()
        for server in (api_a, api_b):
            wait_until(lambda s=server: waiting(s, token, [done_id]), "both polls to wait")
        report(amqp_channel, amqp_prefix, endpoint_id, [done_id])  # the ingest process stores it
        for poller in pollers:
            poller.join(90)
        for name in ("a", "b"):
            assert answers[name].status_code == 200, answers[name].text
            results = answers[name].json()["results"]
            assert [r["task_id"] for r in results] == [done_id], (name, answers[name].text)

        # A cancel made through API process B wakes a poll waiting in A.
        cancel = threading.Thread(
            target=lambda: answers.__setitem__(
                "cancel", poll_until_admitted(api_a, token, [cancelled_id], 60)
            )
        )
        cancel.start()
        wait_until(lambda: waiting(api_a, token, [cancelled_id]), "the poll to wait")
        api(api_b, token)("POST", f"/v1/tasks/{cancelled_id}/cancel", {})
        cancel.join(90)
        (result,) = answers["cancel"].json()["results"]
        assert (result["task_id"], result["state"]) == (cancelled_id, "cancelled")
        for server in servers:
            assert server.stop() == 0, "".join(server.output)
    finally:
        cleanup(servers, fresh_postgres, amqp_prefix)


def test_a_thousand_waiters_are_admitted_and_all_answered(
    fresh_postgres: str, amqp_prefix: str, amqp_channel: Any, tmp_path: Path
) -> None:
    """1,000 long-polls from 100 users (10 each, the per-user cap) wait at once on one API
    process, and each gets its result from the ingest process.

    That all wait at once is seen through the per-user cap: a probe by a user all of whose 10
    polls wait is refused ``too_many_long_polls``.  A probe that comes earlier takes one of
    the user's slots for a moment, so a poll of that user may be refused meanwhile: polls are
    sent again on that refusal, as the SDK does.  The pool itself never refuses one."""
    users, per_user = 100, 10
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * users * per_user:  # our end of the thousand connections
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * users * per_user), hard))
    env = split_env(
        fresh_postgres, amqp_prefix, tmp_path / "home", OUTPOST_LONGPOLL_PER_USER=str(per_user)
    )
    servers: list[Server] = []
    answers: list[tuple[int, str]] = []
    refusals: list[str] = []
    pollers: list[threading.Thread] = []
    try:
        web = start(["serve", "--port", "0", "--no-ingest"], env, LISTENING)
        servers.append(web)
        servers.append(start(["ingest"], env, r"ingest consuming"))
        database = Database(fresh_postgres)
        with database.write() as conn:
            tokens = [issue_token(conn, get_or_create_user(conn, f"u{i}")) for i in range(users)]
        database.dispose()
        work = [(token, *submit(web, token, per_user)) for token in tokens]
        address = urlsplit(web.url)

        def poll(token: str, task_id: str) -> None:
            body = json.dumps({"task_ids": [task_id], "wait": 60})
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            while True:
                connection = http.client.HTTPConnection(address.hostname, address.port, 150)
                connection.request("POST", "/v1/results", body, headers)
                response = connection.getresponse()
                text = response.read().decode()
                connection.close()
                if response.status != 429:
                    answers.append((response.status, text))
                    return
                refusals.append(text)
                time.sleep(float(response.getheader("Retry-After") or 1))  # as the SDK does

        for token, _, task_ids in work:
            for task_id in task_ids:
                pollers.append(threading.Thread(target=poll, args=(token, task_id), daemon=True))
                pollers[-1].start()
        for token, _, task_ids in work:
            wait_until(
                lambda t=token, i=task_ids: waiting(web, t, i[:1]),
                "every poll to wait",
                diagnose=lambda: (
                    f"{len(answers)} answered: {answers[:2]}; {len(refusals)} "
                    f"refused: {refusals[:2]}; server: {''.join(web.output[-10:])}"
                ),
            )
        # All 1,000 wait now: none can leave before its result is published below.
        for _, endpoint_id, task_ids in work:
            report(amqp_channel, amqp_prefix, endpoint_id, task_ids)
        for poller in pollers:
            poller.join(150)
        assert len(answers) == users * per_user
        assert [a for a in answers if a[0] != 200] == []
        assert [a for a in answers if '"pending":[]' not in a[1]] == []
        assert [r for r in refusals if "too_many_long_polls" not in r] == []
    finally:
        cleanup(servers, fresh_postgres, amqp_prefix)


# --------------------------------------------------------------------------- the channel alone
@pytest.fixture
def pg_database(fresh_postgres: str) -> Iterator[Database]:
    database = Database(fresh_postgres)
    database.ensure_schema()
    yield database
    database.dispose()


def finish_unnotified(database: Database, task_id: str) -> None:
    """Store a task and its result as another process would, but tell nobody."""
    suffix = secrets.token_hex(4)
    with database.write() as conn:
        user = get_or_create_user(conn, "quiet").user_id
        endpoint_store.insert(conn, f"e-{suffix}", user, f"quiet-{suffix}", {})
        function_store.insert(conn, f"f-{suffix}", b"", None, user)
        new = task_store.NewTask(task_id, f"e-{suffix}", f"f-{suffix}", b"")
        task_store.insert_many(conn, user, [new], time.time())
    result = ResultEnvelope(task_id, f"e-{suffix}", TaskState.SUCCESS, value=serialize(1))
    with database.write() as conn:
        assert task_store.finish(conn, [result], 3600.0) == [task_id]


def channel(
    notifier: ResultNotifier, prefix: str, database: Database | None, **kwargs: Any
) -> WakeupChannel:
    name = f"outpost-test-wakeups-{secrets.token_hex(4)}"
    return WakeupChannel(
        notifier,
        target(AMQP_URL, None, name),
        Topology(prefix).wakeup_exchange,
        database,
        subscribe=database is not None,
        **kwargs,
    )


def close_connection_named(name: str) -> None:
    """Close a client's connection from the broker's side (as a node restart would)."""
    wanted: list[str] = []

    def listed() -> bool:  # the management API lists a new connection after a few seconds
        answer = requests.get(f"{MANAGEMENT_API}/connections", auth=GUEST, timeout=10).json()
        props = [(c["name"], c.get("client_properties", {})) for c in answer]
        wanted[:] = [n for n, p in props if p.get("connection_name") == name]
        return bool(wanted)

    wait_until(listed, f"the broker to list the connection named {name}")
    for connection in wanted:
        requests.delete(
            f"{MANAGEMENT_API}/connections/{requests.utils.quote(connection, safe='')}",
            auth=GUEST,
            timeout=10,
        )


def test_a_missed_wakeup_only_delays_a_poll_until_the_process_rechecks(
    pg_database: Database, amqp_prefix: str
) -> None:
    notifier = ResultNotifier()
    wakeups = channel(notifier, amqp_prefix, pg_database, recheck_interval=0.5)
    wakeups.start()
    try:
        assert wakeups.connected.wait(30)
        assert notifier.wait_limit() == float("inf")  # no per-waiter polling
        with notifier.awaiting(frozenset({"t-lost"})) as waiter:
            since = notifier.generation
            finish_unnotified(pg_database, "t-lost")
            wait_until(lambda: waiter.wait(since, 1.0) != since, "the re-check to wake it")
            assert notifier.finished_among(since, frozenset({"t-lost"})) == {"t-lost"}
        assert wakeups.recheck_found >= 1 and wakeups.received == 0
    finally:
        wakeups.stop()
        pika.BlockingConnection(pika.URLParameters(AMQP_URL)).channel().exchange_delete(
            Topology(amqp_prefix).wakeup_exchange
        )


def test_a_reconnecting_subscriber_rechecks_and_a_sender_sends_what_it_held_when_away(
    pg_database: Database, amqp_prefix: str
) -> None:
    subscriber_notifier, sender_notifier = ResultNotifier(), ResultNotifier()
    subscriber = channel(subscriber_notifier, amqp_prefix, pg_database)
    subscriber.recheck_interval = float(NO_RECHECK)
    sender = channel(sender_notifier, amqp_prefix, None)
    subscriber.start()
    sender.start()
    try:
        assert subscriber.connected.wait(30) and sender.connected.wait(30)
        wait_until(lambda: subscriber.rechecks == 1, "the re-check after connecting")
        # A message from the other process wakes exactly the poll waiting for its task.
        with (
            subscriber_notifier.awaiting(frozenset({"t-1"})) as mine,
            subscriber_notifier.awaiting(frozenset({"t-other"})) as other,
        ):
            since = subscriber_notifier.generation
            sender_notifier.notify(["t-1"])
            assert mine.wait(since, 30) != since
            assert other.wait(subscriber_notifier.generation, 0.0) == subscriber_notifier.generation
        assert subscriber.received == 1

        # The subscriber's connection drops: it reconnects and re-checks what its polls wait
        # for, so a result committed meanwhile (its message lost) is found without waiting.
        with subscriber_notifier.awaiting(frozenset({"t-2"})) as poll:
            since = subscriber_notifier.generation
            finish_unnotified(pg_database, "t-2")
            close_connection_named(subscriber.target.name)
            wait_until(lambda: poll.wait(since, 1.0) != since, "the re-check after reconnecting")
            assert subscriber.rechecks >= 2

        # A sender that is away keeps what it is told, and sends it once connected.
        late = channel(ResultNotifier(), amqp_prefix, None)
        with subscriber_notifier.awaiting(frozenset({"t-3"})) as poll:
            since = subscriber_notifier.generation
            late.send(["t-3"])
            late.start()
            try:
                assert poll.wait(since, 60) != since
            finally:
                late.stop()
            assert subscriber_notifier.finished_among(since, frozenset({"t-3"})) == {"t-3"}
    finally:
        subscriber.stop()
        sender.stop()
        pika.BlockingConnection(pika.URLParameters(AMQP_URL)).channel().exchange_delete(
            Topology(amqp_prefix).wakeup_exchange
        )


def test_a_small_poll_waiting_in_an_api_process_makes_its_tasks_urgent_for_ingest(
    pg_database: Database, amqp_prefix: str
) -> None:
    """An ingest process stores the results of tasks a poll elsewhere waits for at once, as it
    does for its own process' polls (ResultNotifier.awaiting)."""
    api_notifier, ingest_notifier = ResultNotifier(), ResultNotifier()
    api_side = channel(api_notifier, amqp_prefix, pg_database)
    ingest_side = channel(ingest_notifier, amqp_prefix, None, hears_awaited=True)
    flushes: list[int] = []
    ingest_notifier.on_urgent = lambda: flushes.append(1)  # what the ingest consumer sets
    api_side.start()
    ingest_side.start()
    try:
        assert api_side.connected.wait(30) and ingest_side.connected.wait(30)
        with api_notifier.awaiting(frozenset({"t-small"})):
            wait_until(lambda: ingest_notifier.awaited(["t-small"]), "ingest to hear of it")
        assert flushes
        big = frozenset(f"t-{i}" for i in range(URGENT_MAX + 1))
        with api_notifier.awaiting(big):  # a poll for many ids batches as before
            pass
        assert not api_notifier.awaited(big) and not ingest_notifier.awaited(["t-0"])
    finally:
        api_side.stop()
        ingest_side.stop()
        pika.BlockingConnection(pika.URLParameters(AMQP_URL)).channel().exchange_delete(
            Topology(amqp_prefix).wakeup_exchange
        )
