"""The endpoint CLI verbs, and tasks that wait in RabbitMQ while their endpoint is stopped."""

from __future__ import annotations

import concurrent.futures

import pytest

from outpost import Client, Executor

from .conftest import RunningEndpoint, RunningService, make_endpoint

pytestmark = pytest.mark.e2e


def cube(x: int) -> int:
    return x**3


def test_tasks_submitted_while_stopped_run_after_start(
    service: RunningService, tmp_path_factory: pytest.TempPathFactory
) -> None:
    endpoint = make_endpoint(service, tmp_path_factory.mktemp("stopstart"), "stopstart")
    try:
        endpoint.stop()
        client = Client(url=service.url, token=service.token)
        with Executor(endpoint_id=endpoint.endpoint_id, client=client) as ex:
            futures = [ex.submit(cube, i) for i in range(30)]
            for future in futures:  # accepted and queued although no endpoint is running
                assert future.task_id_ready.wait(60)
            states = {client.get_task(f.task_id)["state"] for f in futures}
            assert states == {"queued"}
            assert endpoint.start() == endpoint.endpoint_id  # same id after a restart
            _done, pending = concurrent.futures.wait(futures, timeout=120)
            assert not pending
            assert sorted(f.result() for f in futures) == sorted(i**3 for i in range(30))
    finally:
        endpoint.run("stop", endpoint.name, check=False)


def test_cli_verbs(service: RunningService, endpoint: RunningEndpoint) -> None:
    listing = endpoint.run("list").stdout
    assert endpoint.name in listing and endpoint.endpoint_id in listing
    status = endpoint.run("status", endpoint.name).stdout
    assert endpoint.endpoint_id in status and "running" in status.lower()
    logs = endpoint.run("logs", endpoint.name, "-n", "50").stdout
    assert logs.strip(), "the endpoint log is empty"
    restarted = endpoint.run("restart", endpoint.name).stdout
    assert endpoint.endpoint_id in restarted
    info = Client(url=service.url, token=service.token).get_endpoint(endpoint.endpoint_id)
    assert info["name"] == endpoint.name
    with Executor(
        endpoint_id=endpoint.endpoint_id, client=Client(url=service.url, token=service.token)
    ) as ex:
        assert ex.submit(cube, 3).result(timeout=60) == 27


def test_unknown_endpoint_name_gives_a_clear_error(endpoint: RunningEndpoint) -> None:
    run = endpoint.run("start", "no-such-endpoint", check=False)
    assert run.returncode != 0
    assert "no-such-endpoint" in run.stderr + run.stdout
    assert "configure" in run.stderr + run.stdout
