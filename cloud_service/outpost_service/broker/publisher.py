"""Publishing to RabbitMQ with publisher confirms.

Like dramatiq's broker: one connection and channel per thread (``threading.local``, pika is not
thread-safe), confirms on, and on a connection or channel error the thread's connection is
dropped and the operation retried on a fresh one, a bounded number of times with backoff, after
which :class:`~outpost_service.errors.BrokerError` is raised (the API answers 503).

Confirms are pipelined: a batch is published in full, then the publisher waits until the
broker has confirmed every message (see :class:`_Confirms`), which is what makes a 10,000-task
submit take a fraction of a second instead of one round trip per task.  Messages are published
``mandatory``: one the broker returns as unroutable (its endpoint queue vanished) gets the queue
declared again and is republished.  After a failure, only unconfirmed messages are published
again: a message may be delivered twice, never zero times (endpoints and ingest tolerate
duplicates).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from outpost.protocol import CancelRequest, TaskEnvelope
from outpost.protocol.conventions import redact_url
from outpost.protocol.signing import Signer
from outpost.protocol.tls import TlsFiles
from outpost.runtime.backoff import backoff_delay
from outpost_service.broker.connection import RECOVERABLE, parameters, tls_problem
from outpost_service.broker.topology import Topology
from outpost_service.errors import BrokerError

log = logging.getLogger(__name__)

#: Seconds to wait for the broker to confirm a published batch before reconnecting.
CONFIRM_TIMEOUT = 30.0


@dataclass
class _Message:
    endpoint_id: str
    kind: str
    body: bytes
    message_id: str
    confirmed: bool = False


@dataclass
class _Confirms:
    """Confirm bookkeeping for one channel: delivery tag → message awaiting its ack."""

    selected: bool = False
    next_tag: int = 1
    #: Called when nothing is left waiting, to end the current ``process_data_events`` wait.
    wake: Callable[[], None] = lambda: None
    waiting: OrderedDict[int, _Message] = field(default_factory=OrderedDict)
    returned: set[str] = field(default_factory=set)

    def on_select_ok(self, _frame: Any) -> None:
        self.selected = True
        self.wake()

    def on_confirm(self, frame: Any) -> None:
        method = frame.method
        if method.multiple:
            tags = []
            for tag in self.waiting:
                if tag > method.delivery_tag:
                    break
                tags.append(tag)
        else:
            tags = [method.delivery_tag]
        acked = isinstance(method, pika.spec.Basic.Ack)
        for tag in tags:
            message = self.waiting.pop(tag, None)
            # A returned message is acked too (after its Basic.Return): it still needs a queue.
            if message is not None and acked and message.message_id not in self.returned:
                message.confirmed = True
        if not self.waiting:
            self.wake()

    def on_return(self, _channel: Any, _method: Any, properties: Any, _body: bytes) -> None:
        self.returned.add(properties.message_id)


@dataclass
class _Link:
    connection: BlockingConnection
    channel: BlockingChannel
    confirms: _Confirms


def _nothing() -> None:
    pass


class Publisher:
    """Publishes envelopes and manages per-endpoint queues on one broker."""

    def __init__(
        self, url: str, topology: Topology, *, attempts: int = 3, tls: TlsFiles | None = None
    ) -> None:
        self.url = url
        self.topology = topology
        self.attempts = max(1, attempts)
        self._params = parameters(url, tls)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: set[BlockingConnection] = set()
        #: Signs task and cancel messages once the app has loaded its key (see app.py).
        self.signer: Signer | None = None

    # ------------------------------------------------------------------ public operations
    def publish_tasks(self, envelopes: Sequence[TaskEnvelope]) -> None:
        """Publish every envelope to its endpoint's queue; return once all are confirmed."""
        messages = [_Message(e.endpoint_id, e.TYPE, self._body(e), e.task_id) for e in envelopes]
        self._run(f"publish {len(messages)} task(s)", lambda link: self._publish(link, messages))

    def publish_cancel(self, request: CancelRequest) -> None:
        message = _Message(
            request.endpoint_id, request.TYPE, self._body(request), f"cancel-{time.time_ns()}"
        )
        self._run("publish a cancel request", lambda link: self._publish(link, [message]))

    def _body(self, envelope: TaskEnvelope | CancelRequest) -> bytes:
        return envelope.to_bytes() if self.signer is None else self.signer.signed_bytes(envelope)

    def declare_endpoint_queue(self, endpoint_id: str) -> None:
        self._run(
            f"declare the queue of endpoint {endpoint_id}",
            lambda link: self.topology.declare_endpoint_queue(link.channel, endpoint_id),
        )

    def delete_endpoint_queue(self, endpoint_id: str) -> None:
        self._run(
            f"delete the queue of endpoint {endpoint_id}",
            lambda link: self.topology.delete_endpoint_queue(link.channel, endpoint_id),
        )

    def close(self) -> None:
        """Close every thread's connection (at shutdown)."""
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            # Already gone, or closed from its own thread meanwhile: nothing left to release.
            with contextlib.suppress(Exception):
                connection.close()

    # ------------------------------------------------------------------ internals
    def _publish(self, link: _Link, messages: list[_Message]) -> None:
        """Publish the unconfirmed ``messages`` and wait for their confirms; re-declare the
        queues of returned (unroutable) ones and go again, a bounded number of rounds."""
        for _round in range(3):
            todo = [m for m in messages if not m.confirmed]
            if not todo:
                return
            confirms = link.confirms
            confirms.returned.clear()
            # The channel's asynchronous side only buffers the frames (BlockingChannel's
            # basic_publish runs the I/O loop once per message); the wait below writes them.
            publish = link.channel._impl.basic_publish
            for message in todo:
                confirms.waiting[confirms.next_tag] = message
                confirms.next_tag += 1
                publish(
                    self.topology.task_exchange,
                    message.endpoint_id,
                    message.body,
                    pika.BasicProperties(
                        delivery_mode=pika.DeliveryMode.Persistent,
                        content_type="application/json",
                        type=message.kind,
                        message_id=message.message_id,
                    ),
                    mandatory=True,
                )
            deadline = time.monotonic() + CONFIRM_TIMEOUT
            while confirms.waiting:
                if time.monotonic() > deadline:
                    raise pika.exceptions.AMQPConnectionError(
                        f"no publisher confirm within {CONFIRM_TIMEOUT:.0f}s"
                    )
                link.connection.process_data_events(time_limit=1.0)
            for endpoint_id in {m.endpoint_id for m in todo if m.message_id in confirms.returned}:
                # The endpoint's queue is gone (deleted by hand, broker reset): declare it again.
                log.warning("queue of endpoint %s was missing; declaring it again", endpoint_id)
                self.topology.declare_endpoint_queue(link.channel, endpoint_id)
        if any(not m.confirmed for m in messages):
            raise pika.exceptions.AMQPChannelError("the broker kept refusing (nack) messages")

    def _run(self, what: str, action: Callable[[_Link], None]) -> None:
        last: BaseException | None = None
        for attempt in range(self.attempts):
            if attempt > 1:  # the first retry is immediate: usually a stale idle connection
                time.sleep(backoff_delay(attempt - 2, base=0.2, cap=5.0))
            try:
                action(self._link())
                return
            except RECOVERABLE as exc:
                last = exc
                log.warning("RabbitMQ error during %s (attempt %d): %r", what, attempt + 1, exc)
                self._drop()
        raise BrokerError(
            f"could not {what}: RabbitMQ at {redact_url(self.url)} failed {self.attempts} times "
            f"(last error: {last!r}); "
            + (tls_problem(last) or "check that the broker is running and reachable")
        )

    def _link(self) -> _Link:
        link: _Link | None = getattr(self._local, "link", None)
        if link is not None and link.channel.is_open:
            return link
        self._drop()
        connection = BlockingConnection(self._params)
        with self._lock:
            self._connections.add(connection)
        self._local.link = link = _Link(connection, connection.channel(), _Confirms())
        # A due timer ends process_data_events at once: the last confirm needs no extra wait.
        link.confirms.wake = lambda: connection.call_later(0, _nothing)
        self.topology.declare_core(link.channel)
        # Pipelined confirms need the channel's asynchronous side: BlockingChannel's own
        # confirm mode waits for each message's ack before publishing the next.
        impl = link.channel._impl
        impl.add_on_return_callback(link.confirms.on_return)
        impl.confirm_delivery(link.confirms.on_confirm, callback=link.confirms.on_select_ok)
        deadline = time.monotonic() + CONFIRM_TIMEOUT
        while not link.confirms.selected:
            if time.monotonic() > deadline:
                raise pika.exceptions.AMQPConnectionError("the broker did not enable confirms")
            connection.process_data_events(time_limit=1.0)
        return link

    def _drop(self) -> None:
        link: _Link | None = getattr(self._local, "link", None)
        self._local.link = None
        if link is None:
            return
        with self._lock:
            self._connections.discard(link.connection)
        # The connection is possibly broken already: nothing left to release then.
        with contextlib.suppress(Exception):
            if link.connection.is_open:
                link.connection.close()
