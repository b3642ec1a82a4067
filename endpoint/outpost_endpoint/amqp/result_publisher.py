"""``ResultPublisher``: the one path by which results and heartbeats leave the endpoint.

It owns a connection and a channel in confirm mode on its own thread.  A result stays in the
outbox until RabbitMQ has confirmed it; only then is ``on_confirmed`` called.  If RabbitMQ goes
away, unconfirmed results stay in the outbox and are published again after the reconnect.
Results are published ``mandatory`` so a missing ingest binding is noticed (and retried)
instead of silently dropping the result.

The endpoint uses :class:`outpost_endpoint.spool.SpooledOutbox`, which keeps the outbox in the
task journal on disk, so results also survive an endpoint crash; the in-memory :class:`Outbox`
here is the interface (and what tests of the publish loop alone use).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions

from outpost.protocol import EndpointStatus, ResultEnvelope
from outpost.protocol.conventions import Backoff
from outpost.protocol.conventions import redact_url as redact
from outpost_endpoint.amqp.connection import AmqpSettings, connect
from outpost_endpoint.errors import BrokerError

log = logging.getLogger(__name__)

_RETRYABLE = (pika.exceptions.AMQPError, OSError)


@dataclass
class Outgoing:
    """A result waiting for its publisher confirm."""

    result: ResultEnvelope
    on_confirmed: Callable[[], None] | None = None


class Outbox:
    """Results not yet confirmed, oldest first (in memory; see the module docstring)."""

    def __init__(self) -> None:
        self._items: collections.deque[Outgoing] = collections.deque()

    def add(self, item: Outgoing) -> None:
        self._items.append(item)

    def peek(self) -> Outgoing | None:
        return self._items[0] if self._items else None

    def pop(self) -> None:
        self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)


class ResultPublisher:
    """Publishes results (with confirms) and periodic heartbeats; see the module docstring."""

    def __init__(
        self,
        settings: AmqpSettings,
        endpoint_id: str,
        *,
        status_details: Callable[[], dict[str, Any]] = dict,
        heartbeat_interval: float | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self.settings = settings
        self.endpoint_id = endpoint_id
        self.status_details = status_details
        self.heartbeat_interval = heartbeat_interval or settings.heartbeat_interval
        self._outbox = outbox if outbox is not None else Outbox()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._startup_error: BaseException | None = None
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._next_heartbeat = 0.0
        self._thread = threading.Thread(target=self._run, name="outpost-publisher", daemon=True)

    # ------------------------------------------------------------------ public API
    def start(self, timeout: float = 30.0) -> None:
        """Connect and start the thread; raise :class:`BrokerError` if the first connect fails."""
        try:
            self._open()
        except _RETRYABLE as exc:
            raise BrokerError(
                f"cannot connect to RabbitMQ at {redact(self.settings.url)} to publish results: "
                f"{exc!r}; is it running and reachable from this host? (set amqp_url in "
                "config.yaml to override the URL the service hands out)"
            ) from exc
        self._thread.start()

    def publish_result(
        self, result: ResultEnvelope, on_confirmed: Callable[[], None] | None = None
    ) -> None:
        """Queue ``result``; ``on_confirmed`` runs on the publisher thread once RabbitMQ has it."""
        with self._cond:
            self._outbox.add(Outgoing(result, on_confirmed))
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._outbox)

    def drain(self, timeout: float) -> bool:
        """Wait until every queued result is confirmed; False if some are still pending."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._outbox, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Send an ``offline`` heartbeat if connected, close, and join the thread."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        else:
            self._close()
        left = self.pending()
        if left:
            log.warning(
                "%d result(s) were not confirmed before stopping; they stay spooled and are "
                "published when the endpoint starts again",
                left,
            )

    # ------------------------------------------------------------------ thread
    def _open(self) -> None:
        self._connection = connect(
            self.settings.url, f"outpost-endpoint {self.endpoint_id} results"
        )
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()
        self._next_heartbeat = 0.0

    def _close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(*_RETRYABLE):
                connection.close()

    def _run(self) -> None:
        backoff = Backoff()
        while True:
            try:
                if self._connection is None:
                    self._open()
                    log.info("result publisher reconnected to %s", redact(self.settings.url))
                backoff.reset()
                if self._stop.is_set():
                    self._send_status("offline")
                    self._close()
                    return
                self._step()
            except Exception as exc:  # a bug must not silently end publishing: reconnect instead
                if isinstance(exc, _RETRYABLE):
                    log.warning(
                        "result publisher lost RabbitMQ (%r); %d result(s) kept for re-publishing",
                        exc,
                        self.pending(),
                    )
                else:
                    log.exception("result publisher failed; reconnecting")
                self._close()
                if self._stop.is_set() or backoff.wait(self._stop):
                    return

    def _step(self) -> None:
        """Publish one pending result, or a heartbeat when due, or wait a little."""
        assert self._connection is not None
        if time.monotonic() >= self._next_heartbeat:
            self._send_status("online")
            self._next_heartbeat = time.monotonic() + self.heartbeat_interval
        with self._cond:
            item = self._outbox.peek()
            if item is None:
                self._cond.wait(timeout=min(1.0, self.heartbeat_interval))
                item = self._outbox.peek()
        if item is None:
            self._connection.process_data_events(0)
            return
        try:
            self._publish(
                self.settings.result_routing_key, item.result.to_bytes(), item.result.TYPE, True
            )
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
            log.error(
                "RabbitMQ did not take the result of task %s (%s); is the ingest queue "
                "bound to %s? retrying",
                item.result.task_id,
                type(exc).__name__,
                self.settings.result_exchange,
            )
            self._stop.wait(1.0)
            return
        # The callback runs before the item leaves the outbox, so ``drain`` returning means
        # every confirmed result's ack has already been handed to the consumer.
        if item.on_confirmed is not None:
            try:
                item.on_confirmed()
            except Exception:
                log.exception("confirm callback for task %s failed", item.result.task_id)
        with self._cond:
            self._outbox.pop()
            self._cond.notify_all()

    def _send_status(self, state: str) -> None:
        try:
            details = self.status_details()
        except Exception as exc:
            details = {"error": f"status unavailable: {exc!r}"}
        status = EndpointStatus(endpoint_id=self.endpoint_id, state=state, details=details)
        try:
            self._publish(self.settings.status_routing_key, status.to_bytes(), status.TYPE, False)
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError):
            log.debug("heartbeat not routed; dropped (heartbeats are not retried)")

    def _publish(self, routing_key: str, body: bytes, kind: str, mandatory: bool) -> None:
        """Publish and block until RabbitMQ confirms (raises on nack / unroutable)."""
        self._channel.basic_publish(
            exchange=self.settings.result_exchange,
            routing_key=routing_key,
            body=body,
            properties=pika.BasicProperties(
                delivery_mode=2, content_type="application/json", type=kind
            ),
            mandatory=mandatory,
        )


__all__ = ["BrokerError", "Outbox", "Outgoing", "ResultPublisher"]
