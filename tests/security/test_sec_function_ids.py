"""The endpoint checks that a task's function bytes hash to its declared ``function_id``.

Allow-lists (the service's policy and the endpoint's own ``allowed_functions``) are lists of
function ids, and a function id is the sha256 of the function payload
(:func:`outpost.protocol.function_id_for`).  A message that names an allowed id but carries
other bytes -- forged on the broker, or sent by a compromised service that holds the signing
key -- must not run: the endpoint fails it with reason ``function_mismatch`` (a stored result,
not a silent drop) and the function never runs.  Real RabbitMQ, a real endpoint link (journal,
consumer, publisher) and real worker processes.
"""

# The endpoint fixtures are imported below, so test arguments of the same names "redefine" them.
# ruff: noqa: F811

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from outpost.protocol import (
    TaskEnvelope,
    TaskState,
    deserialize,
    function_id_for,
    serialize,
    serialize_function,
)
from outpost_endpoint.engine import ProcessPoolEngine
from outpost_endpoint.service import EndpointService

from ..endpoint import tasks
from ..endpoint.conftest import Topology, rabbitmq, topology  # noqa: F401


@pytest.fixture
def endpoint(topology: Topology, tmp_path: Path) -> Iterator[tuple[EndpointService, str]]:
    """An endpoint whose own allow-list holds only ``tasks.square``."""
    allowed = function_id_for(serialize_function(tasks.square))
    service = EndpointService(
        topology.endpoint_id,
        topology.settings,
        ProcessPoolEngine(1),
        prefetch=4,
        journal_path=tmp_path / "journal.db",
        allowed_functions=[allowed],
    )
    service.start()
    yield service, allowed
    service.stop(grace=5)


def test_allowed_id_with_other_function_bytes_is_refused_and_never_runs(
    topology: Topology, endpoint: tuple[EndpointService, str], tmp_path: Path
) -> None:
    _, allowed = endpoint
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    runs.mkdir()
    gate.touch()
    forged = TaskEnvelope(
        task_id=str(uuid.uuid4()),
        function_id=allowed,  # the id of tasks.square ...
        function=serialize_function(tasks.record_run),  # ... but other code
        args=serialize(((str(runs), str(gate)), {})),
        endpoint_id=topology.endpoint_id,
    )
    topology.publish(forged.to_bytes())
    result = topology.result(forged.task_id)
    assert result.state is TaskState.FAILED
    assert result.error is not None
    assert result.error.reason == "function_mismatch"
    assert result.error.type == "outpost.errors.FunctionMismatch"
    actual = function_id_for(forged.function)
    assert allowed in result.error.message and actual in result.error.message

    # the genuine function with its true id still runs; the forged one never did
    genuine = topology.task(tasks.square, 7)
    assert deserialize(topology.result(genuine.task_id).value) == 49
    assert list(runs.iterdir()) == []


def test_a_made_up_id_is_refused_even_without_an_allow_list(
    topology: Topology, tmp_path: Path
) -> None:
    """The check does not depend on an allow-list: a wrong id is never trusted."""
    service = EndpointService(
        topology.endpoint_id,
        topology.settings,
        ProcessPoolEngine(1),
        prefetch=4,
        journal_path=tmp_path / "journal.db",
    )
    service.start()
    try:
        task = TaskEnvelope(
            task_id=str(uuid.uuid4()),
            function_id="f" * 64,
            function=serialize_function(tasks.square),
            args=serialize(((3,), {})),
            endpoint_id=topology.endpoint_id,
        )
        topology.publish(task.to_bytes())
        result = topology.result(task.task_id)
        assert result.state is TaskState.FAILED
        assert result.error is not None and result.error.reason == "function_mismatch"
    finally:
        service.stop(grace=5)
