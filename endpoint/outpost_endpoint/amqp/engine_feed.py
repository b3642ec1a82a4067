"""``EngineFeed``: starts journaled tasks in the engine and follows them until their results
are handed to the result publisher.

A task starts only once the journal holds it: from a delivery just journaled
(:mod:`.acks`), from the journal's unfinished tasks when the endpoint starts (replay), or --
defence in depth -- from a journaled task the engine turns out not to have (reconcile).  Each
start passes the task checks first (:mod:`.checks`), so a refused or cancelled task is
answered, not run.  Everything here runs on the consumer thread, except the engine's done
callbacks, which hand their bookkeeping back to it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from outpost.protocol import ResultEnvelope, TaskEnvelope
from outpost_endpoint.amqp.checks import Checks, NotCancelled
from outpost_endpoint.amqp.flow import Window
from outpost_endpoint.amqp.result_publisher import ResultPublisher
from outpost_endpoint.engine.base import Engine
from outpost_endpoint.errors import EngineError
from outpost_endpoint.journal import RECEIVED, Journal

log = logging.getLogger(__name__)


@dataclass(eq=False)
class EngineFeed:
    """See the module docstring."""

    engine: Engine
    publisher: ResultPublisher
    journal: Journal
    window: Window
    checks: Checks
    #: The task check that answers tasks cancelled before they arrived.
    cancelled: NotCancelled
    #: Runs a callable on the consumer thread, soon (the engine's done callbacks use it).
    on_consumer_thread: Callable[[Callable[[], None]], None]
    #: Tasks the engine finished whose result went to the result publisher, which spools it
    #: on its next turn -- until then the journal still says ``received``.  A redelivery or
    #: the reconcile must not start them again (a publisher blocked by a RabbitMQ disk
    #: alarm once made 6 of 1,000 tasks run twice).  Pruned by the reconcile.
    handed_over: set[str] = field(default_factory=set)

    def admit(self, task: TaskEnvelope, new: bool) -> None:
        """Start a task just journaled (``new``: the journal did not know it before)."""
        if new:
            self.start(task)
        elif task.task_id not in self.window.running | self.handed_over and (
            self.journal.state(task.task_id) == RECEIVED
        ):
            # Journaled by an earlier delivery but not running: that delivery's ack failed
            # mid-way, or the engine refused the task.  Run it now, once.
            log.info("task %s redelivered; starting the journaled copy", task.task_id)
            self.start(task)
        else:
            log.info("task %s is already in the journal (duplicate delivery)", task.task_id)

    def start(self, task: TaskEnvelope) -> None:
        """Put ``task`` in the engine, or answer it if a task check refuses it."""
        task_id = task.task_id
        if task_id in self.window.running:
            return
        answer = self.checks.refusal(task)  # also on replay: the config may have changed
        if answer is not None:
            future: Future[ResultEnvelope] = Future()
            future.set_result(answer)
        else:
            try:
                future = self.engine.submit(task)
            except EngineError as exc:
                log.warning(
                    "task %s not taken by the engine (%s); it stays in the journal and runs "
                    "when the endpoint starts again",
                    task_id,
                    exc,
                )
                return
        self.window.running.add(task_id)
        future.add_done_callback(lambda done: self._on_done(task_id, done))

    def cancel(self, task_id: str) -> None:
        if task_id in self.window.running:
            if self.engine.cancel(task_id):
                log.info("task %s cancelled", task_id)
        else:
            self.cancelled.remember(task_id)

    def replay(self) -> None:
        """Put the journal's unfinished tasks into the engine (before consuming)."""
        bodies = self.journal.unfinished()
        if bodies:
            log.info("replaying %d unfinished task(s) from the journal", len(bodies))
        replayed: list[str] = []
        for body in bodies:
            try:
                task = TaskEnvelope.from_bytes(body)
            except Exception as exc:  # written by another version: fail it, don't crash
                log.error("dropping an unreadable journal entry (%r): %r", exc, body[:200])
                continue
            self.start(task)
            replayed.append(task.task_id)
        if replayed:  # one line, so an operator (and the crash tests) can see what came back
            log.info("replayed task ids: %s", " ".join(replayed))

    def reconcile(self) -> None:
        """Defence in depth: start any journaled, unfinished task the engine does not have
        (one whose start failed).  Logged loudly: finding one means a path to fix."""
        unfinished = self.journal.unfinished_ids()
        self.handed_over &= unfinished  # the others' results are spooled: nothing to guard
        for task_id in unfinished - self.window.running - self.handed_over:
            body = self.journal.task(task_id)
            if body is None:  # finished meanwhile
                continue
            log.warning("task %s was journaled but not in the engine; starting it", task_id)
            self.start(TaskEnvelope.from_bytes(body))

    def _on_done(self, task_id: str, future: Future[ResultEnvelope]) -> None:
        """Engine thread: spool and publish the result (an abandoned task -- a cancelled
        future -- stays ``received`` in the journal and is replayed on the next start)."""
        handed = False
        try:
            if not future.cancelled():
                self.publisher.publish_result(future.result())
                handed = True
        finally:
            self.on_consumer_thread(lambda: self._finished(task_id, handed))

    def _finished(self, task_id: str, handed: bool) -> None:
        """Consumer thread: the task left the engine (its result handed to the publisher,
        unless ``handed`` is false: abandoned, it stays ``received`` and is replayed)."""
        self.window.running.discard(task_id)
        if handed:
            self.handed_over.add(task_id)
