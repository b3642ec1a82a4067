"""The ``Engine`` contract, on ``ProcessPoolEngine`` directly (no RabbitMQ)."""

from __future__ import annotations

import json
import os
import select
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outpost.protocol import TaskEnvelope, TaskState, deserialize, serialize
from outpost_endpoint.engine import ProcessPoolEngine
from outpost_endpoint.errors import EngineError

from . import tasks


def envelope(fn: Any, *args: Any, spec: dict[str, Any] | None = None) -> TaskEnvelope:
    return TaskEnvelope(
        str(uuid.uuid4()), "f", serialize(fn), serialize((args, {})), "ep", None, spec or {}
    )


class Signal:
    """A FIFO a task writes to when it starts running: the test waits on it, no polling."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = str(path)
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)

    def wait(self, timeout: float = 60) -> None:
        ready, _, _ = select.select([self._fd], [], [], timeout)
        assert ready, "the task did not start"
        os.read(self._fd, 1)

    def close(self) -> None:
        os.close(self._fd)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Signal]:
    signal = Signal(tmp_path / "started")
    yield signal
    signal.close()


@pytest.fixture
def engine() -> Iterator[ProcessPoolEngine]:
    pool = ProcessPoolEngine(1)
    pool.start()
    yield pool
    pool.shutdown(wait=False)


def test_status_counts_workers(engine: ProcessPoolEngine) -> None:
    status = engine.status()
    assert (status["workers"], status["idle"], status["outstanding"]) == (1, 1, 0)


def test_cancel_queued_and_running_tasks(
    engine: ProcessPoolEngine, started: Signal, tmp_path: Path
) -> None:
    blocker = envelope(tasks.announce_and_wait, started.path, str(tmp_path / "never"))
    waiting = envelope(tasks.square, 2)
    running, queued = engine.submit(blocker), engine.submit(waiting)
    started.wait()
    assert engine.status()["outstanding"] == 2
    assert engine.cancel(waiting.task_id)
    assert queued.result(10).state is TaskState.CANCELLED
    assert engine.cancel(blocker.task_id)
    result = running.result(60)
    assert result.state is TaskState.CANCELLED and result.error is not None
    assert result.error.reason == "cancelled"
    assert not engine.cancel("unknown-task")
    assert deserialize(engine.submit(envelope(tasks.square, 3)).result(60).value) == 9


def test_shutdown_abandons_unfinished_tasks(
    engine: ProcessPoolEngine, started: Signal, tmp_path: Path
) -> None:
    running = engine.submit(envelope(tasks.announce_and_wait, started.path, str(tmp_path / "no")))
    queued = engine.submit(envelope(tasks.square, 2))
    started.wait()
    engine.shutdown(wait=True, timeout=0.1)
    assert queued.cancelled() and running.cancelled()  # "not run, no answer": redeliver
    assert engine.status()["workers"] == 0
    with pytest.raises(EngineError, match="shutting down"):
        engine.submit(envelope(tasks.square, 2))


def test_shutdown_lets_running_tasks_finish(
    engine: ProcessPoolEngine, started: Signal, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    running = engine.submit(envelope(tasks.announce_and_wait, started.path, str(gate), 4))
    started.wait()
    gate.touch()
    engine.shutdown(wait=True, timeout=60)
    assert deserialize(running.result(0).value) == 4


def test_duplicate_task_ids_are_refused(engine: ProcessPoolEngine, started: Signal) -> None:
    task = envelope(tasks.announce_and_wait, started.path, "/nonexistent/gate")
    engine.submit(task)
    with pytest.raises(EngineError, match="already in the engine"):
        engine.submit(task)


def test_the_task_sees_its_resource_specification(engine: ProcessPoolEngine) -> None:
    spec = {"num_ranks": 2, "launcher_options": "-bind-to core"}
    first = engine.submit(envelope(tasks.resource_specification_seen, spec=spec)).result(60)
    assert json.loads(deserialize(first.value)) == spec
    second = engine.submit(envelope(tasks.resource_specification_seen)).result(60)
    assert json.loads(deserialize(second.value)) == {}  # set per task, not left over
