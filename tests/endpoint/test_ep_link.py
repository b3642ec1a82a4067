"""The endpoint's AMQP link and process-pool engine against a real RabbitMQ."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from outpost.protocol import PROTOCOL_VERSION, TaskState, deserialize
from outpost_endpoint.engine import ProcessPoolEngine
from outpost_endpoint.errors import BrokerError
from outpost_endpoint.service import EndpointService

from . import tasks
from .conftest import Topology, drop_connections

MakeService = Callable[..., EndpointService]


def test_success_value_comes_back(topology: Topology, make_service: MakeService) -> None:
    make_service()
    task = topology.task(tasks.square, 7)
    result = topology.result(task.task_id)
    assert result.state is TaskState.SUCCESS
    assert deserialize(result.value) == 49
    assert result.endpoint_id == topology.endpoint_id
    assert set(result.timing) == {"received", "started", "finished"}
    assert result.node and result.worker


def test_exception_keeps_class_and_traceback(topology: Topology, make_service: MakeService) -> None:
    make_service()
    task = topology.task(tasks.fail, "bad input 42")
    error = topology.result(task.task_id).error
    assert error is not None
    assert error.reason == "exception"
    assert error.type.endswith("tasks.CampaignError")
    assert error.message == "bad input 42"
    assert "in fail" in error.traceback
    assert error.payload is not None
    original = deserialize(error.payload)
    assert type(original).__name__ == "CampaignError" and str(original) == "bad input 42"


def test_walltime_kills_the_worker_and_the_next_task_runs(
    topology: Topology, make_service: MakeService
) -> None:
    make_service(workers=1)
    slow = topology.task(time.sleep, 60, spec={"walltime": 0.5})
    after = topology.task(tasks.square, 3)
    result = topology.result(slow.task_id)
    assert result.state is TaskState.FAILED and result.error is not None
    assert result.error.reason == "timeout"
    assert "walltime" in result.error.message
    assert deserialize(topology.result(after.task_id).value) == 9


def test_lost_worker_fails_its_task_only(topology: Topology, make_service: MakeService) -> None:
    make_service(workers=1)
    dying = topology.task(tasks.exit_now, 3)
    after = topology.task(tasks.square, 4)
    error = topology.result(dying.task_id).error
    assert error is not None and error.reason == "worker_lost"
    assert "exit code 3" in error.message and result_host(error.message)
    assert deserialize(topology.result(after.task_id).value) == 16


def result_host(message: str) -> bool:
    import socket

    return socket.gethostname() in message


def test_unpicklable_result_is_a_serialization_failure(
    topology: Topology, make_service: MakeService
) -> None:
    make_service()
    task = topology.task(tasks.make_lock)
    error = topology.result(task.task_id).error
    assert error is not None and error.reason == "serialization"
    assert "pickle" in error.message


def test_bad_walltime_is_rejected(topology: Topology, make_service: MakeService) -> None:
    make_service()
    task = topology.task(tasks.square, 2, spec={"walltime": "soon"})
    error = topology.result(task.task_id).error
    assert error is not None and error.reason == "rejected" and "walltime" in error.message


def test_cancel_before_run(topology: Topology, make_service: MakeService, tmp_path: Path) -> None:
    make_service(workers=1)
    gate = tmp_path / "gate"
    blocker = topology.task(tasks.wait_for_file, str(gate), 1)
    victim = topology.task(tasks.square, 5)
    topology.cancel(victim.task_id)
    cancelled = topology.result(victim.task_id)
    gate.touch()
    assert cancelled.state is TaskState.CANCELLED
    assert cancelled.error is not None and cancelled.error.reason == "cancelled"
    assert deserialize(topology.result(blocker.task_id).value) == 1


def test_cancel_of_a_running_task_kills_it(
    topology: Topology, make_service: MakeService, tmp_path: Path
) -> None:
    make_service(workers=1)
    running = topology.task(tasks.wait_for_file, str(tmp_path / "never"))
    topology.status(lambda s: s.details["engine"]["running"] == 1)
    topology.cancel(running.task_id)
    assert topology.result(running.task_id).state is TaskState.CANCELLED
    after = topology.task(tasks.square, 6)
    assert deserialize(topology.result(after.task_id).value) == 36


def test_malformed_messages_are_dead_lettered(
    topology: Topology, make_service: MakeService
) -> None:
    make_service()
    topology.publish(b"this is not json")
    wrong_version = tasks_dict(topology) | {"v": PROTOCOL_VERSION + 1}
    topology.publish(json.dumps(wrong_version).encode())
    topology.task(tasks.square, 1, endpoint_id="00000000-0000-0000-0000-000000000000")
    dead = [topology.dead_letter().body for _ in range(3)]
    assert dead[0] == b"this is not json"
    assert json.loads(dead[1])["v"] == PROTOCOL_VERSION + 1
    good = topology.task(tasks.square, 8)
    assert deserialize(topology.result(good.task_id).value) == 64


def tasks_dict(topology: Topology) -> dict[str, object]:
    from outpost.protocol import TaskEnvelope, serialize

    envelope = TaskEnvelope("t-1", "f", serialize(abs), serialize(((1,), {})), topology.endpoint_id)
    return envelope.to_dict()


def test_heartbeats_report_workers(topology: Topology, make_service: MakeService) -> None:
    make_service(workers=2)
    status = topology.status(lambda s: s.details.get("workers") == 2)
    assert status.state == "online"
    assert status.details["hostname"]
    assert status.details["outstanding_tasks"] == 0


def test_unfinished_task_is_replayed_after_stop(
    topology: Topology, make_service: MakeService, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    first = make_service(workers=1)
    task = topology.task(tasks.wait_for_file, str(gate), 7)
    topology.status(lambda s: s.details["engine"]["running"] == 1)
    first.stop(grace=0.2)  # the task is still running: the journal keeps it (acked already)
    assert topology.waiting() == 0
    gate.touch()
    make_service(workers=1)
    assert deserialize(topology.result(task.task_id).value) == 7


def test_finished_task_is_acked(topology: Topology, make_service: MakeService) -> None:
    service = make_service()
    task = topology.task(tasks.square, 9)
    assert deserialize(topology.result(task.task_id).value) == 81
    service.stop(grace=5)
    assert topology.waiting() == 0


def test_survives_losing_rabbitmq_without_running_a_task_twice(
    topology: Topology, make_service: MakeService, tmp_path: Path
) -> None:
    service = make_service(workers=1)
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    task = topology.task(tasks.record_run, str(runs), str(gate))
    topology.status(lambda s: s.details["engine"]["running"] == 1)
    assert drop_connections(topology.endpoint_id) == 2  # consumer and publisher
    gate.touch()
    result = topology.result(task.task_id)
    assert deserialize(result.value) == 3
    after = topology.task(tasks.square, 11)  # consumed after the reconnect
    assert deserialize(topology.result(after.task_id).value) == 121
    service.stop(grace=5)
    assert topology.waiting() == 0  # the redelivered copy was acked, not run again
    assert runs.read_text() == "ran\n"


def test_unreachable_rabbitmq_is_a_clear_start_error(topology: Topology) -> None:
    settings = dataclasses.replace(topology.settings, url="amqp://guest:guest@127.0.0.1:1/")
    service = EndpointService(topology.endpoint_id, settings, ProcessPoolEngine(1), prefetch=1)
    with pytest.raises(BrokerError, match=r"cannot connect to RabbitMQ at amqp://guest:\*\*\*@"):
        service.start()


def test_missing_task_queue_is_a_clear_start_error(topology: Topology) -> None:
    settings = dataclasses.replace(topology.settings, task_queue=f"{topology.prefix}.nope")
    service = EndpointService(topology.endpoint_id, settings, ProcessPoolEngine(1), prefetch=1)
    with pytest.raises(BrokerError, match="was the endpoint deleted on the service"):
        service.start()
