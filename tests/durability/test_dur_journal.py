"""The endpoint's task journal and result spool, alone and inside the endpoint's AMQP link.

The link tests use the endpoint tests' private topology on the real RabbitMQ and a real
process-pool engine (fixtures imported from tests/endpoint/conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from outpost.protocol import ResultEnvelope, TaskState, serialize
from outpost_endpoint.journal import Journal
from outpost_endpoint.service import EndpointService

from ..endpoint import tasks
from ..endpoint.conftest import Topology, make_service, rabbitmq, topology
from .campaign import value_of

__all__ = ["make_service", "rabbitmq", "topology"]  # fixtures used below

MakeService = Callable[..., EndpointService]


def test_journal_keeps_tasks_and_results_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path)
    assert journal.accept("a", b"task a") and journal.accept("b", b"task b")
    assert not journal.accept("a", b"task a again")  # a duplicate delivery
    journal.finish("b", b"result b")
    journal.close()

    again = Journal(path)
    assert again.unfinished() == [b"task a"]
    assert again.spooled() == [b"result b"]
    again.confirm("b")
    assert again.spooled() == []
    assert not again.accept("b", b"task b")  # the tombstone still knows it
    assert again.counts() == {"received": 1, "finished": 0, "confirmed": 1}
    again.close()


def test_journal_prunes_old_tombstones(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    journal.accept("a", b"task")
    journal.confirm("a")
    journal.close()
    assert Journal(tmp_path / "j.db", tombstone_ttl=-1).counts()["confirmed"] == 0


def test_duplicate_delivery_runs_once(
    topology: Topology, make_service: MakeService, tmp_path: Path
) -> None:
    make_service(workers=1)
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    task = topology.task(tasks.record_run, str(runs), str(gate))
    topology.publish(task.to_bytes())  # the same task id again (a second publish)
    gate.touch()
    assert value_of(topology.result(task.task_id)) == 3
    after = topology.task(tasks.square, 5)  # consumed after the duplicate
    assert value_of(topology.result(after.task_id)) == 25
    assert runs.read_text() == "ran\n"
    assert topology.waiting() == 0


def test_spooled_result_is_published_on_start(
    topology: Topology, make_service: MakeService, tmp_path: Path
) -> None:
    """A result the engine produced but RabbitMQ never confirmed before the endpoint died."""
    journal = Journal(tmp_path / "journal.db")  # the file make_service's endpoints use
    result = ResultEnvelope(
        task_id="t-spooled", endpoint_id=topology.endpoint_id, state=TaskState.SUCCESS,
        value=serialize(42),
    )  # fmt: skip
    journal.accept("t-spooled", b"{}")
    journal.finish("t-spooled", result.to_bytes())
    journal.close()
    service = make_service()
    assert value_of(topology.result("t-spooled")) == 42
    assert service.publisher.drain(timeout=30)
    assert service.journal.counts()["finished"] == 0


def test_long_task_is_acked_at_once(
    topology: Topology, make_service: MakeService, tmp_path: Path
) -> None:
    """RabbitMQ's consumer_timeout cannot hit a task that runs for hours: it is acked (and kept
    in the journal) while it runs."""
    service = make_service(workers=1)
    gate = tmp_path / "gate"
    task = topology.task(tasks.wait_for_file, str(gate), 4)
    topology.status(lambda s: s.details["engine"]["running"] == 1)
    assert service.journal.counts()["received"] == 1
    assert unacked(topology) == 0
    gate.touch()
    assert value_of(topology.result(task.task_id)) == 4


def unacked(topology: Topology) -> int:
    import subprocess

    listing = subprocess.run(
        ["rabbitmqctl", "list_queues", "name", "messages_unacknowledged", "--quiet"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    for line in listing.stdout.splitlines():
        name, _, count = line.partition("\t")
        if name == topology.task_queue:
            return int(count)
    raise AssertionError(f"queue {topology.task_queue} not listed")
