"""Endpoint faults reach the user (issue 11, item 6), with real daemons and the PBS emulator.

A scheduler that refuses ``qsub`` used to be asked again every second, and the only trace was
the endpoint's log.  Now refusals back off (5 s doubling to 5 min, with jitter), and the
scheduler's words show in ``outpost-endpoint status``, in ``outpost endpoints list`` (through
the heartbeat) and in the ``TimeoutError`` of a result wait; a wait on a stopped endpoint says
since when it is offline.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from outpost import Client, Executor, ShellFunction

from ..recipes import ensure_mpich
from .stack import RunningService, cli, make_endpoint, start_service, stop_service

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REFUSAL = "Account outpost-test has no allocation left in queue debug"
#: qsub refusals the emulator will hand out; what is left tells how many calls it got
BUDGET = 10_000
#: how long the test watches submissions (an observation window, not a synchronisation)
WINDOW = 15.0


def cube(x: int) -> int:
    return x**3


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    home = tmp_path_factory.mktemp("service-faults")
    running = start_service(home, f"sqlite:///{home}/outpost.db")
    yield running
    stop_service(running)


def wait_for(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def test_refused_qsub_backs_off_and_is_shown_to_the_user(
    service: RunningService, tmp_path: Path
) -> None:
    ensure_mpich()
    state = tmp_path / "pbs-state"
    (state / "jobs").mkdir(parents=True)
    faults = state / "faults.json"
    faults.write_text(json.dumps({"qsub": {"mode": "refuse", "count": BUDGET, "message": REFUSAL}}))
    env_extra = {
        "PATH": os.pathsep.join(
            [str(FIXTURES / "pals_emulator"), str(FIXTURES / "pbs_emulator"), os.environ["PATH"]]
        ),
        "PBS_EMULATOR_STATE": str(state),
        "PBS_EMULATOR_NODES": "x3001c0s1b0n0",
    }

    def edit(data: dict[str, Any]) -> None:
        data["engine"].update(cpu_affinity="none")
        data["engine"]["provider"].update(worker_init="", min_blocks=1)

    def qsub_calls() -> int:
        return BUDGET - int(json.loads(faults.read_text())["qsub"]["count"])

    endpoint = make_endpoint(service, tmp_path, "refused", template="polaris", edit=edit,
                             env_extra=env_extra)  # fmt: skip
    try:
        status = wait_for(
            lambda: (out := endpoint.run("status", endpoint.name).stdout) and
            "blocks failing" in out and out,
            60, "status to show the refusal",
        )  # fmt: skip
        assert f"blocks failing: qsub: {REFUSAL}" in status, status

        before, started = qsub_calls(), time.monotonic()
        time.sleep(WINDOW)
        during, watched = qsub_calls() - before, time.monotonic() - started
        # every 1 s scaling step used to ask again: ~15 calls; backed off: 5 s, 10 s, ...
        assert during <= 4, f"{during} qsub calls in {watched:.0f} s: no backoff"

        user_env = service.env(tmp_path)
        listing = wait_for(
            lambda: (out := subprocess.run([cli("outpost"), "endpoints", "list"], env=user_env,
                                           capture_output=True, text=True, timeout=60).stdout)
            and "blocks failing" in out and out,
            60, "`outpost endpoints list` to show the refusal",
        )  # fmt: skip
        assert f"blocks failing: qsub: {REFUSAL}" in listing, listing

        client = Client(url=service.url, token=service.token)
        with Executor(endpoint_id=endpoint.endpoint_id, client=client) as ex:
            future = ex.submit(ShellFunction("echo never"))
            with pytest.raises(TimeoutError) as caught:
                future.result(timeout=2)
            future.cancel()
        message = str(caught.value)
        assert future.task_id in message and endpoint.endpoint_id in message, message
        assert f"blocks failing: qsub: {REFUSAL}" in message, message
    finally:
        endpoint.run("stop", endpoint.name, check=False, timeout=180)


def test_wait_on_a_stopped_endpoint_says_since_when_it_is_offline(
    service: RunningService, tmp_path: Path
) -> None:
    endpoint = make_endpoint(service, tmp_path, "stopped")
    endpoint.stop()
    client = Client(url=service.url, token=service.token)
    wait_for(
        lambda: client.get_endpoint(endpoint.endpoint_id)["state"] == "offline",
        60,
        "the endpoint to be shown offline",
    )
    with Executor(endpoint_id=endpoint.endpoint_id, client=client) as ex:
        future = ex.submit(cube, 2)
        with pytest.raises(TimeoutError) as caught:
            future.result(timeout=2)
        future.cancel()
    message = str(caught.value)
    assert f"task {future.task_id} still queued after 2 s" in message, message
    assert f"endpoint {endpoint.endpoint_id} offline since 20" in message, message
