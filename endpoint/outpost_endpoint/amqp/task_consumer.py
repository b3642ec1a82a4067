"""``TaskConsumer``: takes task and cancel messages off the endpoint's queue.

No-loss rule (ARCHITECTURE.md): a task message is acknowledged only after its result was
confirmed by RabbitMQ.  The publisher thread learns of the confirm; it hands the ack back to this
consumer's thread (pika channels belong to one thread) through a request queue woken with
``connection.add_callback_threadsafe``.  If the connection dropped meanwhile, the delivery tag
is dead: RabbitMQ redelivers the task, and the consumer then acks the redelivery at once without
running the task again (it remembers which task ids already have a confirmed result).  A
redelivery of a task that is still running is attached to the running task rather than run twice.

Messages that cannot be understood (bad JSON, wrong protocol version, another endpoint's task,
a result on a task queue) are logged with the reason and rejected without requeue, so the queue
dead-letters them and the endpoint keeps working.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pika
import pika.exceptions

from outpost.errors import OutpostError
from outpost.protocol import CancelRequest, ResultEnvelope, TaskEnvelope, decode_message
from outpost.protocol.conventions import Backoff
from outpost.protocol.conventions import redact_url as redact
from outpost_endpoint.amqp.connection import AmqpSettings, connect
from outpost_endpoint.amqp.result_publisher import ResultPublisher
from outpost_endpoint.engine.base import Engine
from outpost_endpoint.errors import BrokerError, EngineError
from outpost_endpoint.results import cancelled_result

log = logging.getLogger(__name__)

_RETRYABLE = (pika.exceptions.AMQPError, OSError)
_MEMORY = 10_000  # how many finished/cancelled task ids to remember for redeliveries


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
    """Feeds the engine from the task queue; see the module docstring."""

    def __init__(
        self,
        settings: AmqpSettings,
        endpoint_id: str,
        engine: Engine,
        publisher: ResultPublisher,
        *,
        prefetch: int,
    ) -> None:
        self.settings = settings
        self.endpoint_id = endpoint_id
        self.engine = engine
        self.publisher = publisher
        self.prefetch = prefetch
        self._requests: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._closing = threading.Event()
        self._consuming_wanted = True
        self._stopped_consuming = threading.Event()
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._consumer_tag: str | None = None
        # task id -> (channel, delivery tag) of its newest delivery; touched on this thread only
        self._inflight: dict[str, tuple[Any, int]] = {}
        self._confirmed = _Recent()  # result confirmed but the ack could not be sent
        self._cancelled = _Recent()  # cancel arrived before the task
        self._thread = threading.Thread(target=self._run, name="outpost-consumer", daemon=True)

    # ------------------------------------------------------------------ public API
    def start(self) -> None:
        """Connect and start consuming; raise :class:`BrokerError` if that fails."""
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
        """Ask RabbitMQ for no more deliveries (messages already here stay ours)."""
        self._consuming_wanted = False  # also holds across a reconnect
        if self._connection is None:
            self._stopped_consuming.set()
        self._call(self._cancel_consumer)
        return self._stopped_consuming.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Send pending acks, then close; unacked messages go back to the queue."""
        self._closing.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def in_flight(self) -> int:
        return len(self._inflight)

    # ------------------------------------------------------------------ cross-thread requests
    def _call(self, request: Callable[[], None]) -> None:
        """Run ``request`` on the consumer thread, soon."""
        self._requests.put(request)
        self._wake()

    def _wake(self) -> None:
        connection = self._connection
        if connection is not None:
            # If the connection is dropping, the loop drains the requests after reconnecting.
            with contextlib.suppress(*_RETRYABLE):
                connection.add_callback_threadsafe(lambda: None)

    def _drain_requests(self) -> None:
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                return
            request()

    # ------------------------------------------------------------------ connection
    def _open(self) -> None:
        self._connection = connect(self.settings.url, f"outpost-endpoint {self.endpoint_id} tasks")
        self._channel = self._connection.channel()
        self._channel.basic_qos(prefetch_count=self.prefetch)
        if self._consuming_wanted:
            self._consumer_tag = self._channel.basic_consume(
                self.settings.task_queue, self._on_message
            )

    def _close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._consumer_tag = None
        if connection is not None and connection.is_open:
            with contextlib.suppress(*_RETRYABLE):
                connection.close()

    def _cancel_consumer(self) -> None:
        self._consuming_wanted = False
        if self._consumer_tag is not None and self._channel is not None:
            self._channel.basic_cancel(self._consumer_tag)
            self._consumer_tag = None
        self._stopped_consuming.set()

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
                connection = self._connection
                assert connection is not None
                connection.process_data_events(time_limit=0.5)
            except Exception as exc:  # a bug must not silently end consuming: reconnect instead
                if isinstance(exc, _RETRYABLE):
                    log.warning(
                        "task consumer lost RabbitMQ (%r); unacked tasks will be redelivered", exc
                    )
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
            message = decode_message(body)
        except Exception as exc:  # OutpostError, or anything a hostile body provokes
            detail = str(exc) if isinstance(exc, OutpostError) else repr(exc)
            self._reject(channel, tag, f"cannot decode message: {detail}", body)
            return
        try:
            self._dispatch(channel, tag, message, body)
        except _RETRYABLE:
            raise
        except Exception as exc:
            log.exception("failed to handle a %s message", message.TYPE)
            self._reject(channel, tag, f"the endpoint failed to handle it: {exc!r}", body)

    def _dispatch(self, channel: Any, tag: int, message: Any, body: bytes) -> None:
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
            self._on_task(channel, tag, message)
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

    def _on_task(self, channel: Any, tag: int, task: TaskEnvelope) -> None:
        task_id = task.task_id
        if self._confirmed.take(task_id):
            log.info("task %s redelivered after its result was confirmed; acking", task_id)
            channel.basic_ack(tag)
            return
        if task_id in self._inflight:
            log.info("task %s redelivered while still in progress; not running it twice", task_id)
            self._inflight[task_id] = (channel, tag)
            return
        if self._cancelled.take(task_id):
            future: Future[ResultEnvelope] = Future()
            future.set_result(cancelled_result(task))
        else:
            try:
                future = self.engine.submit(task)
            except EngineError as exc:
                log.info("task %s not taken (%s); it stays in the queue", task_id, exc)
                return  # unacked: RabbitMQ redelivers it after we close
        self._inflight[task_id] = (channel, tag)
        future.add_done_callback(lambda done: self._on_done(task_id, done))

    def _on_done(self, task_id: str, future: Future[ResultEnvelope]) -> None:
        """Engine thread: publish the result; the ack follows its confirm."""
        if future.cancelled():
            self._call(lambda: self._forget(task_id))
            return
        self.publisher.publish_result(
            future.result(), on_confirmed=lambda: self._call(lambda: self._ack(task_id))
        )

    def _forget(self, task_id: str) -> None:
        self._inflight.pop(task_id, None)  # abandoned by the engine: leave it unacked

    def _ack(self, task_id: str) -> None:
        entry = self._inflight.pop(task_id, None)
        if entry is None:
            return
        channel, tag = entry
        if channel is self._channel and channel is not None and channel.is_open:
            channel.basic_ack(tag)
        else:
            self._confirmed.add(task_id)  # the delivery died with its channel

    def _cancel(self, task_id: str) -> None:
        if task_id in self._inflight:
            if self.engine.cancel(task_id):
                log.info("task %s cancelled", task_id)
        else:
            self._cancelled.add(task_id)
