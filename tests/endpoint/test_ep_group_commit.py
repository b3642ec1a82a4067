"""Group commit keeps the no-loss order: ack only after the accept is durable, publish only
after the finish is durable, and a failed commit acks/publishes nothing.

The journal here is the real one on disk; its commit is made observable by a subclass, and
"durable" is checked from a second, independent SQLite connection to the same file (it sees
only committed transactions).  The consumer tests hand the handler a recording channel (the
one stand-in: RabbitMQ cannot be asked to report when an ack was sent relative to an fsync);
the publisher test uses the real RabbitMQ.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outpost.protocol import ResultEnvelope, TaskEnvelope, TaskState, serialize
from outpost_endpoint.amqp.result_publisher import Outgoing, ResultPublisher
from outpost_endpoint.amqp.task_consumer import TaskConsumer
from outpost_endpoint.errors import JournalError
from outpost_endpoint.journal import CONFIRMED, FINISHED, Journal
from outpost_endpoint.spool import SpooledOutbox

from .conftest import Topology
from .doubles import ResultCollector, offline_consumer, square_task

ENDPOINT = str(uuid.uuid4())


class ObservedJournal(Journal):
    """A journal that counts its commits and can be told to fail them."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.commits = 0
        self.fail_commits = 0  # how many of the next commits fail (as a full disk would)

    def _commit(self) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise sqlite3.OperationalError("database or disk is full")
        super()._commit()
        self.commits += 1


def durable_state(path: Path, task_id: str) -> str | None:
    """The committed state of ``task_id``, read over a separate connection."""
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT state FROM entries WHERE task_id = ?", (task_id,)).fetchone()
    return None if row is None else str(row[0])


class AckChannel:
    """Records each ack and, at that moment, the durable journal state of the acked tasks."""

    def __init__(self, path: Path, task_of_tag: dict[int, str]) -> None:
        self.path = path
        self.task_of_tag = task_of_tag
        self.acks: list[tuple[int, bool]] = []
        self.state_at_ack: dict[str, str | None] = {}

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.acks.append((tag, multiple))
        covered = [t for t in self.task_of_tag if t <= tag] if multiple else [tag]
        for covered_tag in covered:
            task_id = self.task_of_tag[covered_tag]
            self.state_at_ack[task_id] = durable_state(self.path, task_id)


@pytest.fixture
def consumer(tmp_path: Path) -> Iterator[tuple[TaskConsumer, ObservedJournal, ResultCollector]]:
    journal = ObservedJournal(tmp_path / "journal.db")
    with offline_consumer(journal, ENDPOINT, workers=1, prefetch=16) as (made, results):
        yield made, journal, results


def deliver(
    handler: TaskConsumer, journal: ObservedJournal, tags: list[int]
) -> tuple[AckChannel, dict[int, TaskEnvelope]]:
    sent = {tag: square_task(tag, ENDPOINT) for tag in tags}
    channel = AckChannel(Path(journal.path), {tag: t.task_id for tag, t in sent.items()})
    for tag, task in sent.items():
        handler._on_task(channel, tag, task, task.to_bytes())
    return channel, sent


def test_a_burst_is_one_commit_then_one_multiple_ack_of_durable_tasks(
    consumer: tuple[TaskConsumer, ObservedJournal, ResultCollector],
) -> None:
    handler, journal, results = consumer
    before = journal.commits
    channel, sent = deliver(handler, journal, [1, 2, 3, 4, 5])
    assert channel.acks == []  # nothing acked before the burst is written
    handler._flush_burst()
    assert journal.commits - before == 1
    assert channel.acks == [(5, True)]
    assert channel.state_at_ack == {t.task_id: "received" for t in sent.values()}
    done = results.wait(5)
    assert sorted(ResultEnvelope.from_bytes(r.to_bytes()).task_id for r in done) == sorted(
        t.task_id for t in sent.values()
    )


def test_a_burst_with_gaps_in_its_tags_is_acked_one_by_one(
    consumer: tuple[TaskConsumer, ObservedJournal, ResultCollector],
) -> None:
    handler, journal, _results = consumer
    channel, _sent = deliver(handler, journal, [1, 3, 4])  # tag 2: e.g. a rejected message
    handler._flush_burst()
    assert channel.acks == [(1, False), (3, False), (4, False)]
    assert set(channel.state_at_ack.values()) == {"received"}


def test_a_failed_commit_acks_and_starts_nothing(
    consumer: tuple[TaskConsumer, ObservedJournal, ResultCollector],
) -> None:
    handler, journal, _results = consumer
    journal.fail_commits = 1
    channel, sent = deliver(handler, journal, [1, 2])
    with pytest.raises(JournalError, match="disk is full"):
        handler._flush_burst()
    assert channel.acks == []
    assert handler.in_flight() == 0
    assert all(durable_state(Path(journal.path), t.task_id) is None for t in sent.values())


class ObservedPublisher(ResultPublisher):
    """Checks, as each batch of results is handed to pika, that their finish is already
    committed."""

    def __init__(self, *args: Any, journal_path: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.journal_path = journal_path
        self.state_at_publish: dict[str, str | None] = {}

    def _publish_batch(self, batch: list[Any]) -> int:
        for item in batch:
            task_id = item.result.task_id
            self.state_at_publish[task_id] = durable_state(self.journal_path, task_id)
        return super()._publish_batch(batch)


def test_results_are_published_only_after_their_finish_is_durable(
    topology: Topology, tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    journal = ObservedJournal(path)
    journal.fail_commits = 1  # the first finish commit fails: those results must wait
    outbox = SpooledOutbox(journal)
    publisher = ObservedPublisher(
        topology.settings, topology.endpoint_id, outbox=outbox, journal_path=path
    )
    publisher.start()
    try:
        sent = [
            ResultEnvelope(str(uuid.uuid4()), topology.endpoint_id, TaskState.SUCCESS,
                           value=serialize(n))
            for n in range(200)
        ]  # fmt: skip
        confirmed: list[str] = []
        for result in sent:
            publisher.publish_result(result, functools.partial(confirmed.append, result.task_id))
        assert publisher.drain(60)
    finally:
        publisher.stop()
    ids = {r.task_id for r in sent}
    assert set(publisher.state_at_publish) == ids
    assert set(publisher.state_at_publish.values()) == {FINISHED}
    assert sorted(confirmed) == sorted(ids)
    assert all(journal.state(task_id) == CONFIRMED for task_id in ids)
    arrived = {topology.result(task_id).task_id for task_id in ids}  # one envelope each
    assert arrived == ids
    journal.close()


def test_one_transaction_knows_duplicates_within_itself(tmp_path: Path) -> None:
    journal = ObservedJournal(tmp_path / "journal.db")
    assert journal.accept_many([("a", b"1"), ("b", b"2"), ("a", b"again")]) == [True, True, False]
    journal.finish_many([("a", b"result a"), ("b", b"result b")])
    journal.confirm_many(["a"])
    assert journal.commits == 3
    assert journal.counts() == {"received": 0, "finished": 1, "confirmed": 1}
    assert journal.spooled() == [b"result b"]
    journal.close()


class RefusalWatch(ObservedPublisher):
    """Signals when RabbitMQ refused (returned or nacked) part of a published batch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused = threading.Event()

    def _publish_batch(self, batch: list[Any]) -> int:
        taken = super()._publish_batch(batch)
        if taken < len(batch):
            self.refused.set()
        return taken


def test_unroutable_results_stay_spooled_until_the_ingest_binding_is_back(
    topology: Topology, tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    journal = ObservedJournal(path)
    results_exchange = topology.settings.result_exchange
    topology.channel.queue_unbind(topology.ingest, results_exchange, "#")
    publisher = RefusalWatch(
        topology.settings,
        topology.endpoint_id,
        outbox=SpooledOutbox(journal),
        journal_path=path,
    )
    publisher.start()
    try:
        sent = [
            ResultEnvelope(str(uuid.uuid4()), topology.endpoint_id, TaskState.SUCCESS,
                           value=serialize(n))
            for n in range(3)
        ]  # fmt: skip
        for result in sent:
            publisher.publish_result(result)
        assert publisher.refused.wait(60)
        assert publisher.pending() == 3
        assert {journal.state(r.task_id) for r in sent} == {FINISHED}  # not tombstoned
        topology.channel.queue_bind(topology.ingest, results_exchange, "#")
        assert publisher.drain(60)
    finally:
        publisher.stop()
    assert {journal.state(r.task_id) for r in sent} == {CONFIRMED}
    assert {topology.result(r.task_id).task_id for r in sent} == {r.task_id for r in sent}
    journal.close()


def test_a_publisher_turn_is_one_commit_and_tombstones_only_follow_confirms(
    tmp_path: Path,
) -> None:
    journal = ObservedJournal(tmp_path / "journal.db")
    outbox = SpooledOutbox(journal)
    first, second = (
        [Outgoing(ResultEnvelope(str(uuid.uuid4()), ENDPOINT, TaskState.SUCCESS)) for _ in "ab"]
        for _ in range(2)
    )
    outbox.add_many(first)
    assert journal.commits == 1
    outbox.pop_many(len(first))  # RabbitMQ confirmed the first batch
    assert {journal.state(o.result.task_id) for o in first} == {FINISHED}  # not yet written
    assert len(outbox) == len(first)  # so drain() still waits for them
    outbox.add_many(second)  # the next turn: its results and the tombstones, one commit
    assert journal.commits == 2
    assert {journal.state(o.result.task_id) for o in first} == {CONFIRMED}
    assert {journal.state(o.result.task_id) for o in second} == {FINISHED}
    outbox.pop_many(len(second))
    assert outbox.settle() and not outbox.settle()  # no new results: written on their own
    assert journal.commits == 3
    assert {journal.state(o.result.task_id) for o in second} == {CONFIRMED}
    assert len(outbox) == 0
    journal.close()
