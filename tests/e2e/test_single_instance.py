"""Never two instances of one endpoint (issue 11, item 2), with real daemons.

Registering rotates the endpoint's RabbitMQ password and closes its connections, so a second
registration used to cut the running daemon off silently (it looped on ACCESS_REFUSED while
``status`` said running).  Now the service answers 409 while the endpoint heartbeats, a second
``start`` (a copied OUTPOST_HOME, as on two login nodes sharing a home) is refused with the
service's reason, and a forced registration makes the old daemon stop with a reason that
``status`` shows.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from outpost import Client, Executor
from outpost_endpoint import pidfile

from .stack import RunningEndpoint, RunningService, make_endpoint, start_service, stop_service

pytestmark = pytest.mark.e2e


def square(x: int) -> int:
    return x * x


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    home = tmp_path_factory.mktemp("service-single")
    running = start_service(home, f"sqlite:///{home}/outpost.db")
    yield running
    stop_service(running)


def wait_until(probe: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def serves(service: RunningService, endpoint_id: str) -> bool:
    client = Client(url=service.url, token=service.token)
    with Executor(endpoint_id=endpoint_id, client=client) as ex:
        return bool(ex.submit(square, 7).result(timeout=120) == 49)


def online(service: RunningService, endpoint_id: str) -> bool:
    info = Client(url=service.url, token=service.token).get_endpoint(endpoint_id)
    return bool(info["state"] == "online" and info["details"].get("pid"))


def register(service: RunningService, body: dict[str, object]) -> requests.Response:
    return requests.post(
        f"{service.url}/v1/endpoints",
        json=body,
        headers={"Authorization": f"Bearer {service.token}"},
        timeout=30,
    )


def endpoint_pid(endpoint: RunningEndpoint) -> int:
    pid = pidfile.read_pid(endpoint.home / "endpoints" / endpoint.name / "endpoint.pid")
    assert pid is not None
    return pid


def test_second_registration_is_refused_while_the_endpoint_heartbeats(
    service: RunningService, tmp_path: Path
) -> None:
    endpoint = make_endpoint(service, tmp_path / "home", "single")
    copy: RunningEndpoint | None = None
    try:
        wait_until(lambda: online(service, endpoint.endpoint_id), 60, "the first heartbeat")
        answer = register(service, {"name": endpoint.name})
        assert answer.status_code == 409, answer.text
        error = answer.json()["error"]
        assert error["code"] == "conflict"
        assert endpoint.endpoint_id in error["message"] and "force" in error["message"]
        assert error["details"]["pid"] == endpoint_pid(endpoint)
        assert error["details"]["hostname"] in error["message"]
        bad = register(service, {"name": endpoint.name, "force": "yes"})
        assert bad.status_code == 422 and "force" in bad.json()["error"]["message"]
        assert serves(service, endpoint.endpoint_id)  # the first one was not cut off

        # Another "login node" sharing the home: its pid file names no process there.
        home2 = tmp_path / "home2"
        shutil.copytree(endpoint.home, home2)
        (home2 / "endpoints" / endpoint.name / "endpoint.pid").unlink()
        copy = RunningEndpoint(endpoint.name, endpoint.endpoint_id, home2, service.env(home2))
        refused = copy.run("start", endpoint.name, check=False)
        assert refused.returncode != 0
        assert "is connected" in refused.stderr and "--force" in refused.stderr, refused.stderr
        assert serves(service, endpoint.endpoint_id)

        # Forced: the copy takes over; the old daemon stops and says why.
        old_pid = endpoint_pid(endpoint)
        started = copy.run("start", "--force", endpoint.name)
        assert endpoint.endpoint_id in started.stdout
        assert pidfile.wait_gone(old_pid, 60), "the cut-off daemon kept running"
        status = endpoint.run("status", endpoint.name).stdout
        assert "failed: RabbitMQ" in status and "ACCESS_REFUSED" in status, status
        assert "failed: RabbitMQ" in endpoint.run("list").stdout
        assert serves(service, endpoint.endpoint_id)  # served by the copy now
    finally:
        endpoint.run("stop", endpoint.name, check=False)
        if copy is not None:
            copy.run("stop", copy.name, check=False)


def test_restart_after_kill_9_is_not_refused(service: RunningService, tmp_path: Path) -> None:
    """The service still sees the killed daemon's heartbeat; a start on the same host knows
    that process is gone and takes over without --force."""
    endpoint = make_endpoint(service, tmp_path, "killed")
    try:
        wait_until(lambda: online(service, endpoint.endpoint_id), 60, "the first heartbeat")
        pid = endpoint_pid(endpoint)
        os.kill(pid, signal.SIGKILL)
        assert pidfile.wait_gone(pid, 30)
        assert endpoint.start() == endpoint.endpoint_id
        assert serves(service, endpoint.endpoint_id)
        assert "failed" not in endpoint.run("status", endpoint.name).stdout
    finally:
        endpoint.run("stop", endpoint.name, check=False)
