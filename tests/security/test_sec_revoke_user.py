"""``outpost-service revoke-user NAME``: the user's tokens stop working AND their running
endpoint is cut off RabbitMQ (its broker user deleted, its connections closed), so it takes no
more tasks.  Real service process, real endpoint daemon, real broker."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pika
import pytest
import requests

from outpost import Client, Executor
from tests.e2e.stack import (
    AMQP_URL,
    RunningService,
    checked,
    cli,
    make_endpoint,
    start_service,
    stop_service,
)

from .conftest import GUEST, MANAGEMENT_API, management_available, user_exists


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def broker_connections(user: str) -> list[str]:
    """``user``'s open connections, from RabbitMQ's connection tracking (immediate)."""
    listing = requests.get(
        f"{MANAGEMENT_API}/connections/username/{user}", auth=GUEST, timeout=10
    ).json()
    return [c["name"] for c in listing]


def queue_consumers(queue: str) -> int:
    """Consumers of ``queue``, asked over AMQP (the management API's figure lags)."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.consumer_count)
    finally:
        connection.close()


def status(service: RunningService, token: str) -> int:
    response = requests.get(
        f"{service.url}/v1/endpoints", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    return response.status_code


def test_revoke_user_cuts_off_tokens_and_running_endpoints(tmp_path: Path) -> None:
    if not management_available():
        pytest.skip(f"RabbitMQ management API not reachable at {MANAGEMENT_API}")
    service = start_service(tmp_path / "service", f"sqlite:///{tmp_path}/outpost.db", "alice")
    endpoint = None
    try:
        bob = service.create_user("bob")
        endpoint = make_endpoint(service, tmp_path / "alice-ep", f"ep{uuid.uuid4().hex[:6]}")
        broker_user = f"outpost-ep-{endpoint.endpoint_id}"
        queue = endpoint.task_queue
        with Executor(endpoint.endpoint_id, client=Client(service.url, service.token)) as ex:
            assert ex.submit(abs, -3).result(timeout=120) == 3  # the endpoint takes tasks
        assert broker_connections(broker_user) and queue_consumers(queue) >= 1

        env = {
            **service.env(),
            "OUTPOST_DATABASE_URL": service.database_url,
            "OUTPOST_AMQP_URL": AMQP_URL,
            "OUTPOST_AMQP_PREFIX": service.amqp_prefix,
        }
        run = checked([cli("outpost-service"), "revoke-user", "alice"], env, 60)
        assert "user alice: 1 active token(s) revoked" in run.stdout, run.stdout
        assert "1 endpoint(s) cut off the broker" in run.stdout, run.stdout

        assert status(service, service.token) == 401
        assert status(service, bob) == 200  # other users are untouched
        assert not user_exists(broker_user)
        # The daemon's connections are closed and it cannot log in again (nor register again:
        # that needs a token), so nothing consumes its queue any more.
        wait_until(lambda: not broker_connections(broker_user), "the endpoint's connections")
        wait_until(lambda: queue_consumers(queue) == 0, "the endpoint's consumer to go")

        again = checked([cli("outpost-service"), "revoke-user", "alice"], env, 60)
        assert "0 active token(s) revoked" in again.stdout  # idempotent
        unknown = [cli("outpost-service"), "revoke-user", "nobody"]
        refused = subprocess.run(unknown, env=env, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1 and "no user named 'nobody'" in refused.stderr
    finally:
        if endpoint is not None:
            endpoint.run("stop", endpoint.name, check=False)
        stop_service(service)
