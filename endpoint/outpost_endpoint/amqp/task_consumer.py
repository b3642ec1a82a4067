"""``TaskConsumer``: takes task and cancel messages off the endpoint's queue.

The consume loop: one thread owns the connection, reconnects with
:class:`~outpost.runtime.backoff.Backoff` when RabbitMQ goes away, and runs every step of a
delivery's way in order -- decode, the message checks (:mod:`.checks`: a message that fails one
is dead-lettered), flow control (:mod:`.flow`: how many tasks wait for room in the engine),
journal and ack (:mod:`.acks`), and the engine (:mod:`.engine_feed`, which runs the task checks
before a task starts).  Other threads reach it only through :meth:`TaskConsumer._call`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

import pika
import pika.exceptions

from outpost.errors import OutpostError
from outpost.protocol import CancelRequest, TaskEnvelope, decode_message
from outpost.protocol.envelopes import json_object
from outpost.protocol.signing import Verifier
from outpost.runtime.amqp_connection import RETRYABLE
from outpost.runtime.backoff import Backoff
from outpost_endpoint.amqp import flow
from outpost_endpoint.amqp.acks import journal_and_ack
from outpost_endpoint.amqp.checks import NotCancelled, endpoint_checks
from outpost_endpoint.amqp.connection import AmqpSettings, connect, credentials_refused
from outpost_endpoint.amqp.engine_feed import EngineFeed
from outpost_endpoint.amqp.flow import Delivery, Window
from outpost_endpoint.amqp.result_publisher import ResultPublisher
from outpost_endpoint.engine.base import Engine
from outpost_endpoint.errors import BrokerError, JournalError
from outpost_endpoint.journal import Journal

log = logging.getLogger(__name__)

_RECONCILE_EVERY = 30.0  # seconds between checks that every journaled task is in the engine


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
        self.endpoint_id = endpoint_id
        self.journal = journal
        self.window = Window(prefetch)
        cancelled = NotCancelled()
        self.checks = endpoint_checks(
            endpoint_id,
            # the service's signature on task and cancel messages (outpost.protocol.signing)
            verifier=Verifier(settings.task_signing_key, max_age=settings.task_max_age)
            if settings.task_signing_key
            else None,
            allowed_functions=allowed_functions,
            cancelled=cancelled,
        )
        self.feed = EngineFeed(
            engine, publisher, journal, self.window, self.checks, cancelled, self._call
        )
        self._requests: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_pending = False  # a wake-up is on its way: later requests need none
        self._closing = threading.Event()
        self._consuming_wanted = True
        self._stopped_consuming = threading.Event()
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._consumer_tag: str | None = None
        self._next_reconcile = time.monotonic() + _RECONCILE_EVERY
        self._thread = threading.Thread(target=self._run, name="outpost-consumer", daemon=True)

    # ------------------------------------------------------------------ public API
    def start(self) -> None:
        """Replay the journal's unfinished tasks, connect and start consuming; raise
        :class:`BrokerError` if connecting fails."""
        self.feed.replay()
        try:
            self._open()
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._close()
            raise BrokerError(
                f"cannot consume from task queue {self.settings.task_queue!r}: {exc.reply_text}; "
                "was the endpoint deleted on the service? re-register with `outpost-endpoint "
                "start`"
            ) from exc
        except RETRYABLE as exc:
            self._close()
            raise BrokerError(
                f"cannot connect to RabbitMQ at {self.settings.shown()} to receive tasks: "
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
        return len(self.window.running)

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
            with contextlib.suppress(*RETRYABLE):
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
            self.settings.urls, f"outpost-endpoint {self.endpoint_id} tasks", self.settings.tls
        )
        self._channel = self._connection.channel()
        self._channel.basic_qos(prefetch_count=self.window.prefetch)
        self._throttle()

    def _close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._consumer_tag = None
        self.window.waiting.clear()  # unacked: RabbitMQ delivers them again
        if connection is not None and connection.is_open:
            with contextlib.suppress(*RETRYABLE):
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
        self.window.hand_back()

    def _throttle(self) -> None:
        """Consume while wanted; hand back deliveries that waited too long (:mod:`.flow`);
        consumer thread."""
        overdue = self.window.overdue()
        if not self._consuming_wanted or overdue:
            if overdue:
                log.info(
                    "a task delivery waited over %g s for room in the engine (%d task(s) "
                    "there): handing %d waiting delivery(ies) back to RabbitMQ until half of "
                    "the window is free",
                    flow.HOLD_LIMIT,
                    len(self.window.running),
                    len(self.window.waiting),
                )
            self._pause()
        elif self._consumer_tag is None and self._channel is not None and self.window.may_consume():
            self._consumer_tag = self._channel.basic_consume(
                self.settings.task_queue, self._on_message
            )

    def _run(self) -> None:
        backoff = Backoff()
        while True:
            try:
                if self._connection is None:
                    self._open()
                    log.info("task consumer reconnected to %s", self.settings.shown())
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
                if isinstance(exc, RETRYABLE):
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
            problem = self.checks.problem(message, data)  # before the journal: a refused
            if problem is not None:  # message is never run, replayed or answered
                self._reject(channel, tag, problem, body)
            elif isinstance(message, TaskEnvelope):
                self._on_task(channel, tag, message, body)
            elif isinstance(message, CancelRequest):
                for task_id in message.task_ids:
                    self.feed.cancel(task_id)
                channel.basic_ack(tag)
        except (*RETRYABLE, JournalError):
            # JournalError: the disk refuses writes.  The task is not acked; the reconnect
            # (with backoff) hands every unacked message back to RabbitMQ to try again later.
            raise
        except Exception as exc:
            log.exception("failed to handle a %s message", message.TYPE)
            self._reject(channel, tag, f"the endpoint failed to handle it: {exc!r}", body)

    def _reject(self, channel: Any, tag: int, reason: str, body: bytes) -> None:
        log.error("rejecting message (dead-lettered): %s; body starts %r", reason, body[:200])
        channel.basic_reject(tag, requeue=False)

    def _on_task(self, channel: Any, tag: int, task: TaskEnvelope, body: bytes) -> None:
        """Hold the task; :meth:`_flush_burst` journals, acks and starts it."""
        self.window.hold(Delivery(channel, tag, task, body, time.monotonic()))

    def _flush_burst(self) -> None:
        """Journal the deliveries the engine has room for in one transaction, then ack them,
        then start their tasks; the rest keep waiting (:mod:`.flow`, :mod:`.acks`)."""
        journal_and_ack(self.journal, self.window.take(), self.feed.admit)

    def _maybe_reconcile(self) -> None:
        if time.monotonic() < self._next_reconcile or not self._consuming_wanted:
            return
        self._next_reconcile = time.monotonic() + _RECONCILE_EVERY
        self.feed.reconcile()
