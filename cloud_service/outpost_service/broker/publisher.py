"""Publishing to RabbitMQ with publisher confirms.

Like dramatiq's broker, on a connection or channel error the connection is dropped and the
operation retried on a fresh one, a bounded number of times with backoff, after which
:class:`~outpost_service.errors.BrokerError` is raised (the API answers 503).

Messages go through one :class:`~outpost.runtime.amqp_confirms.ConfirmingConnection` shared by
every request thread: a batch is published in full, then its thread waits until the broker has
confirmed every message of it, which is what makes a 10,000-task submit take a fraction of a
second instead of one round trip per task.  Messages are published ``mandatory``: one the
broker returns as unroutable (its endpoint queue vanished) gets the queue declared again and is
republished.  After a failure, only unconfirmed messages are published again: a message may be
delivered twice, never zero times (endpoints and ingest tolerate duplicates).

Declaring and deleting queues (the topology) goes through a second, blocking connection, used
by one thread at a time: those calls are rare (registration, deletion) and synchronous.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from outpost.protocol import CancelRequest, TaskEnvelope
from outpost.protocol.signing import Signer
from outpost.protocol.tls import TlsFiles
from outpost.runtime.amqp_confirms import ConfirmingConnection, Message, persistent_json
from outpost.runtime.amqp_connection import RETRYABLE, UntrustedBrokerError
from outpost.runtime.backoff import backoff_delay
from outpost_service.broker.connection import target
from outpost_service.broker.topology import Topology
from outpost_service.errors import BrokerError

log = logging.getLogger(__name__)

#: Seconds to wait for the broker to confirm a published batch before reconnecting.
CONFIRM_TIMEOUT = 30.0
#: Rounds of republishing refused (returned or nacked) messages after declaring their queues.
_ROUNDS = 3


class Publisher:
    """Publishes envelopes and manages per-endpoint queues on one broker."""

    def __init__(
        self,
        url: str | Sequence[str],
        topology: Topology,
        *,
        attempts: int = 3,
        tls: TlsFiles | None = None,
    ) -> None:
        self.topology = topology
        self.attempts = max(1, attempts)
        self._target = target(url, tls)
        self.url = self._target.url
        self._target.parameters()  # unusable TLS files raise ConfigurationError now, at start
        self._lock = threading.Lock()
        self._confirming: ConfirmingConnection | None = None
        self._topology_lock = threading.Lock()
        self._blocking: BlockingConnection | None = None
        self._topology_channel: BlockingChannel | None = None
        #: Signs task and cancel messages once the app has loaded its key (see app.py).
        self.signer: Signer | None = None

    # ------------------------------------------------------------------ public operations
    def publish_tasks(self, envelopes: Sequence[TaskEnvelope]) -> None:
        """Publish every envelope to its endpoint's queue; return once all are confirmed."""
        pending = [self._message(e.endpoint_id, e, e.task_id) for e in envelopes]
        self._run(f"publish {len(pending)} task(s)", lambda: self._publish(pending))

    def publish_cancel(self, request: CancelRequest) -> None:
        pending = [self._message(request.endpoint_id, request, f"cancel-{time.time_ns()}")]
        self._run("publish a cancel request", lambda: self._publish(pending))

    def declare_endpoint_queue(self, endpoint_id: str) -> None:
        self._run(
            f"declare the queue of endpoint {endpoint_id}",
            lambda: self._on_topology(self.topology.declare_endpoint_queue, endpoint_id),
        )

    def delete_endpoint_queue(self, endpoint_id: str) -> None:
        self._run(
            f"delete the queue of endpoint {endpoint_id}",
            lambda: self._on_topology(self.topology.delete_endpoint_queue, endpoint_id),
        )

    def close(self) -> None:
        """Close both connections (at shutdown)."""
        with self._lock:
            confirming, self._confirming = self._confirming, None
        if confirming is not None:
            confirming.close()
        with self._topology_lock:
            self._close_blocking()

    # ------------------------------------------------------------------ internals
    def _message(
        self, endpoint_id: str, envelope: TaskEnvelope | CancelRequest, message_id: str
    ) -> Message:
        body = envelope.to_bytes() if self.signer is None else self.signer.signed_bytes(envelope)
        properties = persistent_json(envelope.TYPE, message_id)
        return Message(self.topology.task_exchange, endpoint_id, body, properties, True)

    def _publish(self, pending: list[Message]) -> None:
        """Publish ``pending`` and wait for their confirms; re-declare the queues of refused
        (returned as unroutable, or nacked) ones and publish those again, a bounded number of
        rounds.  Each confirmed message leaves ``pending`` even when the round fails, so that
        a retry publishes only the others."""
        for _round in range(_ROUNDS):
            taken = [False] * len(pending)
            link = self._connection()
            try:
                link.publish(pending, CONFIRM_TIMEOUT, taken)
            finally:
                pending[:] = [message for message, ok in zip(pending, taken, strict=True) if not ok]
            if not pending:
                return
            # The rest go out on a new connection: after a quorum queue's leader died, the
            # broker's channel may keep routing to it and nack (or throttle) every publish of
            # ours for good (seen on RabbitMQ 3.10; a new channel finds the new leader).
            self._discard(link)
            for endpoint_id in {message.routing_key for message in pending}:
                # The endpoint's queue is gone (deleted by hand, broker reset), or the broker
                # refused (nack) the message: declare the queue again, then republish.
                log.warning("endpoint %s's queue refused messages; declaring it again", endpoint_id)
                self._on_topology(self.topology.declare_endpoint_queue, endpoint_id)
        raise pika.exceptions.AMQPChannelError("the broker kept refusing (nack) messages")

    def _connection(self) -> ConfirmingConnection:
        """The shared confirming connection, opened (after declaring the exchanges) if needed."""
        with self._lock:
            if self._confirming is None or not self._confirming.is_open:
                if self._confirming is not None:
                    self._confirming.close()
                    self._confirming = None
                self._on_topology(self.topology.declare_core)
                self._confirming = ConfirmingConnection.open(self._target)
            return self._confirming

    def _discard(self, link: ConfirmingConnection) -> None:
        """Close ``link`` if it is still the shared confirming connection."""
        with self._lock:
            shared = self._confirming is link
            if shared:
                self._confirming = None
        if shared:
            link.close()

    def _on_topology(self, action: Callable[..., None], *args: str) -> None:
        """Run ``action(channel, *args)`` on the blocking connection, one thread at a time."""
        with self._topology_lock:
            if self._topology_channel is None or not self._topology_channel.is_open:
                self._close_blocking()
                self._blocking = self._target.connect()
                self._topology_channel = self._blocking.channel()
                self.topology.declare_core(self._topology_channel)
            try:
                action(self._topology_channel, *args)
            except RETRYABLE:
                self._close_blocking()
                raise

    def _close_blocking(self) -> None:
        blocking, self._blocking, self._topology_channel = self._blocking, None, None
        # The connection is possibly broken already: nothing left to release then.
        with contextlib.suppress(Exception):
            if blocking is not None and blocking.is_open:
                blocking.close()

    def _run(self, what: str, action: Callable[[], None]) -> None:
        last: BaseException | None = None
        for attempt in range(self.attempts):
            if attempt > 1:  # the first retry is immediate: usually a stale idle connection
                time.sleep(backoff_delay(attempt - 2, base=0.2, cap=5.0))
            try:
                action()
                return
            except RETRYABLE as exc:
                last = exc
                log.warning("RabbitMQ error during %s (attempt %d): %r", what, attempt + 1, exc)
            except UntrustedBrokerError as exc:  # a setting must change: retrying cannot help
                raise BrokerError(f"could not {what}: {exc}") from exc
        raise BrokerError(
            f"could not {what}: RabbitMQ at {self._target.shown()} failed {self.attempts} times "
            f"(last error: {last!r}); "
            + (self._target.tls_problem(last) or "check that the broker is running and reachable")
        )
