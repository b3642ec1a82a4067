"""``TaskConsumer``: takes task and cancel messages off the endpoint's queue.

No-loss rule (ARCHITECTURE.md): a task message is written to the endpoint's durable
:class:`~outpost_endpoint.journal.Journal` *before* it is acknowledged, and acknowledged at once
after that -- RabbitMQ's ``consumer_timeout`` would close a channel that held a message for the
length of an HPC task.  From the ack on, the journal keeps the task: its result is spooled there
until RabbitMQ confirms it, and tasks found unfinished when the endpoint starts are replayed into
the engine.  A delivery of a task id the journal already knows (a redelivery after a lost ack,
a duplicate publish) is acked without running the task again.

Group commit: the tasks of one delivery burst (everything one ``process_data_events`` call
dispatches) are journaled in ONE transaction, then acked -- with ``multiple=True`` when their
delivery tags are contiguous -- and then started.  An ack still never precedes its task's
durable journal entry; deliveries of a burst that is not yet written are simply unacked, and
RabbitMQ hands them out again if the connection drops.

Since acks no longer bound the work taken, the consumer bounds it itself, without broker
round trips in the common case: when ``prefetch`` tasks are in the engine, task deliveries wait
in memory -- neither journaled nor acked -- until the engine has room again (at least a quarter
of the window, so one journal transaction still takes many tasks).  Waiting deliveries are
unacked, so the channel's QoS (``prefetch`` unacked messages) stops RabbitMQ from sending more:
at most ``prefetch`` tasks in the engine plus ``prefetch`` waiting.  A delivery never waits
longer than :data:`HOLD_LIMIT` (far below RabbitMQ's ``consumer_timeout``): past that the
consumer is cancelled, the waiting deliveries go back to the queue untouched, and it consumes
again once half of the engine's tasks are done.  (Cancelling at every window edge, as before,
cost two RPCs per half window and requeued every delivery buffered at the cancel -- about
40% of deliveries in a no-op run were redeliveries.)

Messages that cannot be understood (bad JSON, wrong protocol version, another endpoint's task,
a result on a task queue) or, once the endpoint holds the service's signing key, that fail the
signature check (unsigned, tampered, signed for another endpoint, too old) are logged with the
reason and rejected without requeue, so the queue dead-letters them and the endpoint keeps
working.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future
from typing import Any, NamedTuple

import pika
import pika.exceptions

from outpost.errors import OutpostError
from outpost.protocol import CancelRequest, ResultEnvelope, TaskEnvelope, decode_message
from outpost.protocol.conventions import redact_url as redact
from outpost.protocol.envelopes import json_object
from outpost.protocol.signing import SignatureError, Verifier
from outpost.runtime.backoff import Backoff
from outpost_endpoint.amqp.connection import AmqpSettings, connect, credentials_refused
from outpost_endpoint.amqp.result_publisher import ResultPublisher
from outpost_endpoint.engine.base import Engine
from outpost_endpoint.errors import BrokerError, EngineError, JournalError
from outpost_endpoint.journal import RECEIVED, Journal
from outpost_endpoint.results import cancelled_result, refusal

log = logging.getLogger(__name__)

_RETRYABLE = (pika.exceptions.AMQPError, OSError)
_MEMORY = 10_000  # how many cancelled-before-arrival task ids to remember
_RECONCILE_EVERY = 30.0  # seconds between checks that every journaled task is in the engine
#: Seconds a task delivery may wait (unacked, not journaled) for room in the engine before it
#: is handed back to RabbitMQ; far below RabbitMQ's ``consumer_timeout`` (30 min by default).
HOLD_LIMIT = 60.0


class _Delivery(NamedTuple):
    """A task delivery not yet journaled nor acked."""

    channel: Any
    tag: int
    task: TaskEnvelope
    body: bytes
    arrived: float  # time.monotonic() when it was delivered


class _Recent:
    """A bounded set of task ids (oldest forgotten first)."""

    def __init__(self, size: int = _MEMORY) -> None:
        self._ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._size = size

    def add(self, task_id: str) -> None:
        self._ids[task_id] = None
        while len(self._ids) > self._size:
            self._ids.popitem(last=False)

    def take(self, task_id: str) -> bool:
        """True (and forget it) if ``task_id`` was remembered."""
        return self._ids.pop(task_id, False) is None


class TaskConsumer:
    """Feeds the engine from the task queue through the journal; see the module docstring."""

    def __init__(
        self,
        settings: AmqpSettings,
        endpoint_id: str,
        engine: Engine,
        publisher: ResultPublisher,
        *,
        prefetch: int,
        journal: Journal,
        allowed_functions: Collection[str] | None = None,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        #: Called (with the reason) instead of reconnecting when RabbitMQ refuses our
        #: credentials: the endpoint was registered again elsewhere; the daemon stops.
        self.on_fatal = on_fatal
        #: The function ids this endpoint runs (None: any); others fail without running.
        self.allowed_functions = None if allowed_functions is None else frozenset(allowed_functions)
        self.endpoint_id = endpoint_id
        self.engine = engine
        self.publisher = publisher
        self.prefetch = max(1, prefetch)
        self.journal = journal
        self._requests: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_pending = False  # a wake-up is on its way: later requests need none
        self._closing = threading.Event()
        self._consuming_wanted = True
        self._stopped_consuming = threading.Event()
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._consumer_tag: str | None = None
        self._running: set[str] = set()  # task ids in the engine; touched on this thread only
        #: Tasks the engine finished whose result went to the result publisher, which spools it
        #: on its next turn -- until then the journal still says ``received``.  A redelivery or
        #: the reconcile must not start them again (a publisher blocked by a RabbitMQ disk
        #: alarm once made 6 of 1,000 tasks run twice).  Pruned by the reconcile.
        self._handed_over: set[str] = set()
        #: Task deliveries not yet journaled nor acked, oldest first (consumer thread only):
        #: this burst's, and those waiting for room in the engine.
        self._waiting: collections.deque[_Delivery] = collections.deque()
        self._cancelled = _Recent()  # cancel arrived before the task
        self._next_reconcile = time.monotonic() + _RECONCILE_EVERY
        self._thread = threading.Thread(target=self._run, name="outpost-consumer", daemon=True)
        #: Checks the service's signature on task and cancel messages (outpost.protocol.signing)
        self._verifier = (
            Verifier(settings.task_signing_key, max_age=settings.task_max_age)
            if settings.task_signing_key
            else None
        )

    # ------------------------------------------------------------------ public API
    def start(self) -> None:
        """Replay the journal's unfinished tasks, connect and start consuming; raise
        :class:`BrokerError` if connecting fails."""
        self._replay()
        try:
            self._open()
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._close()
            raise BrokerError(
                f"cannot consume from task queue {self.settings.task_queue!r}: {exc.reply_text}; "
                "was the endpoint deleted on the service? re-register with `outpost-endpoint "
                "start`"
            ) from exc
        except _RETRYABLE as exc:
            self._close()
            raise BrokerError(
                f"cannot connect to RabbitMQ at {redact(self.settings.url)} to receive tasks: "
                f"{exc!r}; is it running and reachable from this host? (set amqp_url in "
                "config.yaml to override the URL the service hands out)"
            ) from exc
        self._thread.start()

    def stop_consuming(self, timeout: float = 10.0) -> bool:
        """Ask RabbitMQ for no more deliveries."""
        self._consuming_wanted = False  # also holds across a reconnect
        if self._connection is None:
            self._stopped_consuming.set()
        self._call(self._cancel_consumer)
        return self._stopped_consuming.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Close the connection (every delivery was acked already: the journal has them)."""
        self._closing.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def in_flight(self) -> int:
        return len(self._running)

    # ------------------------------------------------------------------ cross-thread requests
    def _call(self, request: Callable[[], None]) -> None:
        """Run ``request`` on the consumer thread, soon."""
        self._requests.put(request)
        # One wake-up per turn of the consumer loop, not one per finished task: the loop
        # clears the flag before it drains, so a request put after that wakes it again.
        if not self._wake_pending:
            self._wake_pending = True
            self._wake()

    def _wake(self) -> None:
        connection = self._connection
        if connection is not None:
            # If the connection is dropping, the loop drains the requests after reconnecting.
            with contextlib.suppress(*_RETRYABLE):
                connection.add_callback_threadsafe(lambda: None)

    def _drain_requests(self) -> None:
        self._wake_pending = False
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                return
            request()

    # ------------------------------------------------------------------ connection
    def _open(self) -> None:
        self._connection = connect(
            self.settings.url, f"outpost-endpoint {self.endpoint_id} tasks", self.settings.tls
        )
        self._channel = self._connection.channel()
        self._channel.basic_qos(prefetch_count=self.prefetch)
        self._throttle()

    def _close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._consumer_tag = None
        self._waiting.clear()  # unacked: RabbitMQ delivers them again
        if connection is not None and connection.is_open:
            with contextlib.suppress(*_RETRYABLE):
                connection.close()

    def _cancel_consumer(self) -> None:
        self._consuming_wanted = False
        self._pause()
        self._stopped_consuming.set()

    def _pause(self) -> None:
        """Cancel the consumer and hand every waiting delivery back to RabbitMQ."""
        if self._consumer_tag is not None and self._channel is not None:
            self._channel.basic_cancel(self._consumer_tag)  # buffered deliveries are requeued
        self._consumer_tag = None
        while self._waiting:
            delivery = self._waiting.popleft()
            delivery.channel.basic_reject(delivery.tag, requeue=True)

    def _throttle(self) -> None:
        """Consume while wanted; hand back deliveries that waited too long (see the module
        docstring); consumer thread."""
        held_too_long = bool(self._waiting) and (
            time.monotonic() - self._waiting[0].arrived > HOLD_LIMIT
        )
        if not self._consuming_wanted or held_too_long:
            if held_too_long:
                log.info(
                    "a task delivery waited over %g s for room in the engine (%d task(s) "
                    "there): handing %d waiting delivery(ies) back to RabbitMQ until half of "
                    "the window is free",
                    HOLD_LIMIT,
                    len(self._running),
                    len(self._waiting),
                )
            self._pause()
        elif (
            self._consumer_tag is None
            and self._channel is not None
            and len(self._running) <= self.prefetch // 2
        ):
            self._consumer_tag = self._channel.basic_consume(
                self.settings.task_queue, self._on_message
            )

    def _run(self) -> None:
        backoff = Backoff()
        while True:
            try:
                if self._connection is None:
                    self._open()
                    log.info("task consumer reconnected to %s", redact(self.settings.url))
                backoff.reset()
                self._drain_requests()
                if self._closing.is_set():
                    self._close()
                    return
                self._flush_burst()  # last turn's deliveries, or waiting ones that now fit
                self._throttle()
                self._maybe_reconcile()
                connection = self._connection
                assert connection is not None
                connection.process_data_events(time_limit=0.5)
            except Exception as exc:  # a bug must not silently end consuming: reconnect instead
                reason = credentials_refused(exc, self.settings.url)
                if reason is not None and self.on_fatal is not None:
                    log.error("task consumer stops: %s", reason)
                    self._close()
                    self._stopped_consuming.set()
                    self.on_fatal(reason)
                    return
                if isinstance(exc, _RETRYABLE):
                    log.warning("task consumer lost RabbitMQ (%r); reconnecting", exc)
                else:
                    log.exception("task consumer failed; reconnecting")
                self._close()
                if not self._consuming_wanted:
                    self._stopped_consuming.set()
                if self._closing.is_set() or backoff.wait(self._closing):
                    self._drain_requests()
                    return

    # ------------------------------------------------------------------ messages
    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        tag = method.delivery_tag
        try:
            data = json_object(body)  # parsed once for the signature check and the envelope
            message = decode_message(data)
        except Exception as exc:  # OutpostError, or anything a hostile body provokes
            detail = str(exc) if isinstance(exc, OutpostError) else repr(exc)
            self._reject(channel, tag, f"cannot decode message: {detail}", body)
            return
        try:
            self._dispatch(channel, tag, message, data, body)
        except (*_RETRYABLE, JournalError):
            # JournalError: the disk refuses writes.  The task is not acked; the reconnect
            # (with backoff) hands every unacked message back to RabbitMQ to try again later.
            raise
        except Exception as exc:
            log.exception("failed to handle a %s message", message.TYPE)
            self._reject(channel, tag, f"the endpoint failed to handle it: {exc!r}", body)

    def _dispatch(
        self, channel: Any, tag: int, message: Any, data: dict[str, Any], body: bytes
    ) -> None:
        if self._verifier is not None and isinstance(message, (TaskEnvelope, CancelRequest)):
            try:  # before the journal: a refused task is never run, replayed or answered
                self._verifier.verify(data, self.endpoint_id)
            except SignatureError as exc:
                self._reject(channel, tag, f"refused by the signature check: {exc}", body)
                return
        if isinstance(message, TaskEnvelope):
            if message.endpoint_id != self.endpoint_id:
                self._reject(
                    channel,
                    tag,
                    f"task {message.task_id} is addressed to endpoint "
                    f"{message.endpoint_id}, not this one ({self.endpoint_id})",
                    body,
                )
                return
            self._on_task(channel, tag, message, body)
        elif isinstance(message, CancelRequest):
            if message.endpoint_id != self.endpoint_id:
                self._reject(
                    channel,
                    tag,
                    f"cancel request is addressed to endpoint {message.endpoint_id}, not this one",
                    body,
                )
                return
            for task_id in message.task_ids:
                self._cancel(task_id)
            channel.basic_ack(tag)
        else:
            self._reject(
                channel, tag, f"a {message.TYPE!r} message does not belong on a task queue", body
            )

    def _reject(self, channel: Any, tag: int, reason: str, body: bytes) -> None:
        log.error("rejecting message (dead-lettered): %s; body starts %r", reason, body[:200])
        channel.basic_reject(tag, requeue=False)

    def _on_task(self, channel: Any, tag: int, task: TaskEnvelope, body: bytes) -> None:
        """Collect the task; :meth:`_flush_burst` journals, acks and starts it."""
        self._waiting.append(_Delivery(channel, tag, task, body, time.monotonic()))

    def _room(self) -> int:
        """How many waiting deliveries to take now: all that fit in the engine's window, but
        only once a quarter of the window (or every waiting delivery) fits, so that a full
        engine finishing tasks one by one does not cost one journal transaction per task."""
        room = self.prefetch - len(self._running)
        if room < min(len(self._waiting), max(1, self.prefetch // 4)):
            return 0
        return room

    def _flush_burst(self) -> None:
        """Journal the deliveries the engine has room for in one transaction, then ack them,
        then start their tasks; the rest keep waiting (see the module docstring)."""
        take = min(len(self._waiting), self._room())
        if not take:
            return
        burst = [self._waiting.popleft() for _ in range(take)]
        fresh = self.journal.accept_many([(d.task.task_id, d.body) for d in burst])
        try:  # may fail with the connection: the journal has the tasks
            self._ack(burst[0].channel, [d.tag for d in burst])
        finally:
            for (_, _, task, _, _), new in zip(burst, fresh, strict=True):
                if new:
                    self._start(task)
                elif task.task_id not in self._running | self._handed_over and (
                    self.journal.state(task.task_id) == RECEIVED
                ):
                    # Journaled by an earlier delivery but not running: that delivery's ack
                    # failed mid-way, or the engine refused the task.  Run it now, once.
                    log.info("task %s redelivered; starting the journaled copy", task.task_id)
                    self._start(task)
                else:
                    log.info("task %s is already in the journal (duplicate delivery)", task.task_id)

    @staticmethod
    def _ack(channel: Any, tags: list[int]) -> None:
        """Ack ``tags``: one ``multiple=True`` ack when they are contiguous, else one by one.
        (Deliveries are taken oldest first and every other message is settled as it arrives,
        so every delivery before a burst is settled when it is flushed, and a multiple ack of
        a contiguous burst covers exactly the burst.)"""
        tags = sorted(tags)
        if len(tags) > 1 and tags[-1] - tags[0] == len(tags) - 1:
            channel.basic_ack(tags[-1], multiple=True)
            return
        for tag in tags:
            channel.basic_ack(tag)

    def _maybe_reconcile(self) -> None:
        """Defence in depth: start any journaled, unfinished task the engine does not have
        (one whose start failed).  Logged loudly: finding one means a path to fix."""
        if time.monotonic() < self._next_reconcile or not self._consuming_wanted:
            return
        self._next_reconcile = time.monotonic() + _RECONCILE_EVERY
        unfinished = self.journal.unfinished_ids()
        self._handed_over &= unfinished  # the others' results are spooled: nothing to guard
        for task_id in unfinished - self._running - self._handed_over:
            body = self.journal.task(task_id)
            if body is None:  # finished meanwhile
                continue
            log.warning("task %s was journaled but not in the engine; starting it", task_id)
            self._start(TaskEnvelope.from_bytes(body))

    def _replay(self) -> None:
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
            self._start(task)
            replayed.append(task.task_id)
        if replayed:  # one line, so an operator (and the crash tests) can see what came back
            log.info("replayed task ids: %s", " ".join(replayed))

    def _start(self, task: TaskEnvelope) -> None:
        task_id = task.task_id
        if task_id in self._running:
            return
        answer = self._refusal(task)  # also on replay: the config may have changed
        if self._cancelled.take(task_id) or answer is not None:
            future: Future[ResultEnvelope] = Future()
            future.set_result(answer or cancelled_result(task))
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
        self._running.add(task_id)
        future.add_done_callback(lambda done: self._on_done(task_id, done))

    def _refusal(self, task: TaskEnvelope) -> ResultEnvelope | None:
        """The failed result of a task this endpoint will not run, else None
        (:func:`outpost_endpoint.results.refusal`)."""
        return refusal(task, self.allowed_functions)

    def _on_done(self, task_id: str, future: Future[ResultEnvelope]) -> None:
        """Engine thread: spool and publish the result (an abandoned task -- a cancelled
        future -- stays ``received`` in the journal and is replayed on the next start)."""
        handed = False
        try:
            if not future.cancelled():
                self.publisher.publish_result(future.result())
                handed = True
        finally:
            self._call(lambda: self._finished(task_id, handed))

    def _finished(self, task_id: str, handed: bool) -> None:
        """Consumer thread: the task left the engine (its result handed to the publisher,
        unless ``handed`` is false: abandoned, it stays ``received`` and is replayed)."""
        self._running.discard(task_id)
        if handed:
            self._handed_over.add(task_id)

    def _cancel(self, task_id: str) -> None:
        if task_id in self._running:
            if self.engine.cancel(task_id):
                log.info("task %s cancelled", task_id)
        else:
            self._cancelled.add(task_id)
