"""A shared endpoint's results cannot run code in its users' processes (issue 12, item 2).

The real stack: ``outpost-service serve`` on the shared RabbitMQ, users alice and bob, and a
real ``outpost-endpoint`` daemon owned by alice and shared with bob.  Functions running there
return or raise booby-trapped objects whose pickle, when loaded, leaves a file named after the
loading process's pid (``result_trust_tasks.leave_marker``).  Bob -- through ``fut.result()``,
``Client.get_result``, ``reload_tasks()``, ``outpost tasks result`` and an end-to-end sealed
executor -- never loads them: ``UntrustedResultError`` for values, a ``RemoteExecutionError``
from the class name, message and traceback text for exceptions; plain data works without an
opt-in, and opting in (``trust_endpoint=True`` and friends) loads pickles.  A client that does
not know the rule (an older SDK, here raw HTTP) gets nothing to unpickle: the service withholds
it.  Alice, the owner, is unaffected -- and her loading the same booby-trapped result leaves the
marker, the proof that the pickle was live.
"""

# The durability fixtures are imported below, so test arguments of the same names "redefine" them.
# ruff: noqa: F811

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from outpost import Client, Executor
from outpost.cli import cli
from outpost.errors import RemoteExecutionError, UntrustedResultError

from ..durability.conftest import service, service_database, service_home  # noqa: F401
from ..e2e.stack import RunningEndpoint, RunningService, make_endpoint
from . import result_trust_tasks as tasks

WAIT = 120


@dataclass
class Shared:
    service: RunningService
    endpoint: RunningEndpoint
    alice: Client
    bob: Client
    bob_token: str
    markers: Path

    def loaded_here(self) -> bool:
        """Did a booby-trapped pickle run code in this (the test's) process?"""
        return (self.markers / str(os.getpid())).exists()


@pytest.fixture
def shared(service: RunningService, tmp_path: Path) -> Iterator[Shared]:
    bob_token = service.create_user("bob")
    name = f"trust{uuid.uuid4().hex[:6]}"
    endpoint = make_endpoint(service, tmp_path / "endpoint", name)
    alice = Client(url=service.url, token=service.token)
    bob = Client(url=service.url, token=bob_token)
    alice.set_endpoint_policy(endpoint.endpoint_id, allowed_users=["bob"])
    markers = tmp_path / "markers"
    markers.mkdir()
    try:
        yield Shared(service, endpoint, alice, bob, bob_token, markers)
    finally:
        endpoint.run("stop", name, check=False)
        alice.close()
        bob.close()


def test_a_shared_endpoints_pickles_never_load_in_its_users_process(shared: Shared) -> None:
    endpoint_id = shared.endpoint.endpoint_id
    folder = str(shared.markers)
    with Executor(endpoint_id, client=shared.bob) as ex:
        booby = ex.submit(tasks.booby_result, folder)
        plain = ex.submit(tasks.plain_result, 4)
        a_set = ex.submit(tasks.set_result, 3)
        raised = ex.submit(tasks.booby_error, folder)
        plain_raised = ex.submit(tasks.plain_error, 7)

        with pytest.raises(UntrustedResultError) as caught:
            booby.result(timeout=WAIT)
        message = str(caught.value)
        assert endpoint_id in message and "'alice'" in message
        assert "trust_endpoint=True" in message and "--trust-endpoint" in message
        assert caught.value.owner == "alice" and caught.value.endpoint_id == endpoint_id
        # Plain data needs no opt-in.
        assert plain.result(timeout=WAIT) == tasks.plain_result(4)
        with pytest.raises(UntrustedResultError):
            a_set.result(timeout=WAIT)
        # Exceptions: rebuilt from text, the pickle never loaded.
        error = raised.exception(timeout=WAIT)
        assert isinstance(error, RemoteExecutionError)
        assert error.remote_type.endswith("result_trust_tasks.BoobyError")
        assert "booby-trapped exception" in str(error) and "not unpickled" in str(error)
        assert "in booby_error" in error.remote_traceback  # the frame, as text
        other = plain_raised.exception(timeout=WAIT)
        assert isinstance(other, RemoteExecutionError) and "bad n: 7" in str(other)
    assert not shared.loaded_here()

    # Client.get_result and a later process's reload_tasks() refuse the same way.
    with pytest.raises(UntrustedResultError):
        shared.bob.get_result(booby.task_id)
    assert shared.bob.get_result(plain.task_id) == tasks.plain_result(4)
    with pytest.raises(RemoteExecutionError):
        shared.bob.get_result(raised.task_id)
    with Executor(endpoint_id, client=shared.bob, task_group_id=ex.task_group_id) as again:
        reloaded = {f.task_id: f for f in again.reload_tasks()}
        with pytest.raises(UntrustedResultError):
            reloaded[booby.task_id].result(timeout=WAIT)
        assert isinstance(reloaded[raised.task_id].exception(timeout=WAIT), RemoteExecutionError)
        assert reloaded[plain.task_id].result(timeout=WAIT) == tasks.plain_result(4)

    # The CLI likewise; --trust-endpoint opts in (here for the harmless set).
    runner = CliRunner()
    env = {"OUTPOST_URL": shared.service.url, "OUTPOST_TOKEN": shared.bob_token}
    refused = runner.invoke(cli, ["tasks", "result", booby.task_id], env=env)
    assert refused.exit_code == 1 and "--trust-endpoint" in refused.output
    failed = runner.invoke(cli, ["tasks", "result", raised.task_id], env=env)
    assert failed.exit_code == 1 and "BoobyError" in failed.output
    assert runner.invoke(cli, ["tasks", "result", a_set.task_id], env=env).exit_code == 1
    trusted = runner.invoke(cli, ["tasks", "result", "--trust-endpoint", a_set.task_id], env=env)
    assert trusted.exit_code == 0 and trusted.output.strip() == "{0, 1, 2}"
    assert not shared.loaded_here()

    # An SDK that predates the rule gets nothing to unpickle: the service withholds it.
    headers = {"Authorization": f"Bearer {shared.bob_token}"}
    answer = requests.post(
        f"{shared.service.url}/v1/results",
        json={"task_ids": [booby.task_id, raised.task_id, plain.task_id]},
        headers=headers,
        timeout=30,
    ).json()
    by_id = {r["task_id"]: r for r in answer["results"]}
    assert by_id[booby.task_id]["value"] is None
    assert by_id[booby.task_id]["withheld"] == ["value"]
    assert by_id[raised.task_id]["error"]["payload"] is None
    assert by_id[raised.task_id]["withheld"] == ["error.payload"]
    assert by_id[plain.task_id]["value"] is not None and "withheld" not in by_id[plain.task_id]
    assert {r["endpoint_owned"] for r in by_id.values()} == {False}
    assert {r["endpoint_owner"] for r in by_id.values()} == {"alice"}
    shown = requests.get(
        f"{shared.service.url}/v1/tasks/{booby.task_id}", headers=headers, timeout=30
    ).json()
    assert shown["result"]["value"] is None and shown["result"]["withheld"] == ["value"]


def test_trusting_the_endpoint_loads_its_pickles(shared: Shared) -> None:
    endpoint_id = shared.endpoint.endpoint_id
    with Executor(endpoint_id, client=shared.bob, trust_endpoint=True) as ex:
        assert ex.submit(tasks.set_result, 3).result(timeout=WAIT) == {0, 1, 2}
        error = ex.submit(tasks.plain_error, 7).exception(timeout=WAIT)
        assert type(error) is ValueError and str(error) == "bad n: 7"  # the original class
        later = ex.submit(tasks.set_result, 2)
        assert later.result(timeout=WAIT) == {0, 1}
    task_id = later.task_id
    assert task_id is not None
    trusting = Client(url=shared.service.url, token=shared.bob_token, trust_endpoints=[endpoint_id])
    try:
        assert trusting.get_result(task_id) == {0, 1}
    finally:
        trusting.close()
    assert shared.bob.get_result(task_id, trust_endpoint=True) == {0, 1}
    with pytest.raises(UntrustedResultError):
        shared.bob.get_result(task_id)


def test_sealed_results_of_a_shared_endpoint_are_judged_after_opening(shared: Shared) -> None:
    """Sealed payloads pass the service unseen: the SDK applies the rule once it opens them."""
    folder = str(shared.markers)
    with Executor(shared.endpoint.endpoint_id, client=shared.bob, encrypt=True) as ex:
        booby = ex.submit(tasks.booby_result, folder)
        plain = ex.submit(tasks.plain_result, 3)
        raised = ex.submit(tasks.booby_error, folder)
        with pytest.raises(UntrustedResultError):
            booby.result(timeout=WAIT)
        assert plain.result(timeout=WAIT) == tasks.plain_result(3)
        error = raised.exception(timeout=WAIT)
        assert isinstance(error, RemoteExecutionError) and "booby-trapped" in str(error)
    assert not shared.loaded_here()


def test_the_owner_is_unaffected(shared: Shared) -> None:
    """Alice's own endpoint is trusted: pickles load, exceptions keep their class -- and her
    loading the booby-trapped value leaves the marker, so the pickles above were live."""
    with Executor(shared.endpoint.endpoint_id, client=shared.alice) as ex:
        assert ex.submit(tasks.set_result, 3).result(timeout=WAIT) == {0, 1, 2}
        assert ex.submit(tasks.plain_result, 2).result(timeout=WAIT) == tasks.plain_result(2)
        error = ex.submit(tasks.plain_error, 1).exception(timeout=WAIT)
        assert type(error) is ValueError
        assert not shared.loaded_here()
        ex.submit(tasks.booby_result, str(shared.markers)).result(timeout=WAIT)
    assert shared.loaded_here()
