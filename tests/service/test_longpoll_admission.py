"""Waiting long-polls: a bounded pool, a cap per user (429 with Retry-After), and a token
revoked while its poll waits gets 401, not results (cloud_service/outpost_service/longpoll.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from outpost.errors import ConfigurationError
from outpost.protocol import ResultEnvelope, TaskState, serialize
from outpost_service.config import ServiceConfig
from outpost_service.longpoll import DEFAULT_SLOTS, pool_threads
from outpost_service.store import tasks as task_store
from outpost_service.store.users import revoke_token

from .conftest import Caller, app_state, new_token


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


class Polls:
    """Long-polls running in threads, each on its own test client; answers kept by name."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.answers: dict[str, Any] = {}
        self.threads: list[threading.Thread] = []

    def start(self, name: str, token: str, task_ids: list[str], wait: float = 30) -> None:
        def run() -> None:
            client = self.app.test_client()
            self.answers[name] = client.post(
                "/v1/results",
                json={"task_ids": task_ids, "wait": wait},
                headers={"Authorization": f"Bearer {token}"},
            )

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(60)
            assert not thread.is_alive()


@pytest.fixture
def polls(app: Flask) -> Iterator[Polls]:
    running = Polls(app)
    yield running
    app_state(app).notifier.close()  # releases any poll a failed test left waiting
    running.join()


def finish(app: Flask, endpoint_id: str, task_ids: list[str]) -> None:
    """Store a result for ``task_ids`` and wake the polls, as ingest does."""
    state = app_state(app)
    with state.database.write() as conn:
        task_store.finish(
            conn,
            [
                ResultEnvelope(t, endpoint_id, TaskState.SUCCESS, value=serialize(1))
                for t in task_ids
            ],
            3600.0,
        )
    state.notifier.notify(task_ids)


def task_of(caller: Caller) -> tuple[str, str]:
    endpoint_id = caller.register_endpoint()
    (task_id,) = caller.submit(endpoint_id, caller.register_function(), (1,))
    return endpoint_id, task_id


@pytest.fixture
def small_app(make_app: Any) -> Flask:
    app: Flask = make_app(longpoll_slots=3, longpoll_per_user=2)
    return app


def test_long_polls_over_the_user_cap_or_the_pool_get_429(small_app: Flask) -> None:
    app = small_app
    alice = Caller(app.test_client(), new_token(app, "alice"))
    bob = Caller(app.test_client(), new_token(app, "bob"))
    polls = Polls(app)
    gate = app_state(app).longpolls
    try:
        ep_a, task_a = task_of(alice)
        ep_b, task_b = task_of(bob)
        polls.start("a1", alice.token, [task_a])
        polls.start("a2", alice.token, [task_a])
        wait_until(lambda: gate.waiting == 2, "alice's two polls to wait")

        over_user = alice.post("/v1/results", {"task_ids": [task_a], "wait": 30})
        assert over_user.status_code == 429
        assert over_user.headers["Retry-After"] == "1"
        error = over_user.get_json()["error"]
        assert error["code"] == "too_many_long_polls" and error["details"]["limit"] == 2
        assert "2 result long-polls waiting" in error["message"]
        # A poll that need not wait is answered, cap or not.
        assert alice.ok("post", "/v1/results", {"task_ids": [task_a], "wait": 0})["pending"]

        polls.start("b1", bob.token, [task_b])  # bob has his own share of the pool
        wait_until(lambda: gate.waiting == 3, "bob's poll to wait")
        pool_full = bob.post("/v1/results", {"task_ids": [task_b], "wait": 30})
        assert pool_full.status_code == 429
        assert pool_full.get_json()["error"]["code"] == "long_polls_busy"

        finish(app, ep_a, [task_a])
        finish(app, ep_b, [task_b])
        polls.join()
        for name in ("a1", "a2", "b1"):
            assert polls.answers[name].status_code == 200, polls.answers[name].get_json()
            assert polls.answers[name].get_json()["pending"] == []
        assert gate.waiting == 0
    finally:
        app_state(app).notifier.close()
        polls.join()


def test_a_token_revoked_while_its_poll_waits_gets_401_not_results(
    app: Flask, alice: Caller, polls: Polls
) -> None:
    endpoint_id, task_id = task_of(alice)
    polls.start("poll", alice.token, [task_id])
    wait_until(lambda: app_state(app).longpolls.waiting == 1, "the poll to wait")
    with app_state(app).database.write() as conn:
        assert revoke_token(conn, alice.token)
    finish(app, endpoint_id, [task_id])  # the result the poll waited for arrives
    polls.join()
    answer = polls.answers["poll"]
    assert answer.status_code == 401
    assert answer.get_json()["error"]["code"] == "token_revoked"
    assert "results" not in answer.get_json()


def test_waiting_polls_get_threads_on_top_of_the_ordinary_ones() -> None:
    assert pool_threads(32, 1000) == 1032
    assert ServiceConfig.from_env().longpoll_slots == DEFAULT_SLOTS == 1000
    with pytest.raises(ConfigurationError, match="longpoll_slots must be positive"):
        ServiceConfig.from_env(longpoll_slots=0)
