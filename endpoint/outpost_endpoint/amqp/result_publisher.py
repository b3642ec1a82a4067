"""``ResultPublisher``: the one path by which results and heartbeats leave the endpoint.

Its thread owns a :class:`~outpost.runtime.amqp_confirms.ConfirmingConnection` (a channel in
confirm mode).  A result stays in the outbox until RabbitMQ has confirmed it; only then is
``on_confirmed`` called.  If RabbitMQ goes away, unconfirmed results stay in the outbox and are
published again after the reconnect.  Results are published ``mandatory`` so a missing ingest
binding is noticed (and retried) instead of silently dropping the result.

Throughput without weaker guarantees: ``publish_result`` only hands the result over (the
caller, the engine's result thread, never waits on a disk or a lock held across one).  The
publisher thread takes every result handed over since its last turn, adds them to the outbox
at once (:meth:`Outbox.add_many`: for the spooled outbox, one fsynced journal transaction), and
only then publishes them -- one ResultEnvelope per AMQP message, as the service's ingest
expects -- with their confirms pipelined: the whole batch is published, then the thread waits
until RabbitMQ has confirmed all of it (one broker fsync per batch instead of per result), and
removes the confirmed ones from the outbox at once (:meth:`Outbox.pop_many`; the spooled
outbox writes their tombstones in the same journal transaction as the next turn's results, or
in :meth:`Outbox.settle` when no result follows, so a busy turn costs one fsync).

The endpoint uses :class:`outpost_endpoint.spool.SpooledOutbox`, which keeps the outbox in the
task journal on disk, so results also survive an endpoint crash; the in-memory :class:`Outbox`
here is the interface (and what tests of the publish loop alone use).
"""

from __future__ import annotations

import collections
import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pika.exceptions

from outpost.protocol import EndpointStatus, ResultEnvelope
from outpost.runtime.amqp_confirms import ConfirmingConnection, Message, persistent_json
from outpost.runtime.amqp_connection import RETRYABLE
from outpost.runtime.backoff import Backoff
from outpost_endpoint.amqp.connection import (
    AmqpSettings,
    credentials_refused,
    endpoint_errors,
)
from outpost_endpoint.errors import BrokerError

log = logging.getLogger(__name__)

#: Most results published before waiting for their confirms.
BATCH = 500
#: Seconds to wait for RabbitMQ to confirm a published batch before reconnecting.
CONFIRM_TIMEOUT = 30.0


@dataclass
class Outgoing:
    """A result waiting for its publisher confirm."""

    result: ResultEnvelope
    on_confirmed: Callable[[], None] | None = None

    @functools.cached_property
    def body(self) -> bytes:
        """The message body, encoded once (for the journal and for RabbitMQ)."""
        return self.result.to_bytes()


class Outbox:
    """Results not yet confirmed, oldest first (in memory; see the module docstring).

    Only the publisher thread changes it; ``len`` may be read from any thread."""

    def __init__(self) -> None:
        self._items: collections.deque[Outgoing] = collections.deque()

    def add_many(self, items: list[Outgoing]) -> None:
        """Take ``items``; once this returns they may be published."""
        self._items.extend(items)

    def add(self, item: Outgoing) -> None:
        self.add_many([item])

    def peek_many(self, limit: int) -> list[Outgoing]:
        """The oldest ``limit`` items (they stay in the outbox)."""
        return list(itertools.islice(self._items, limit))

    def peek(self) -> Outgoing | None:
        return self._items[0] if self._items else None

    def pop_many(self, count: int) -> None:
        """Drop the oldest ``count`` items: RabbitMQ confirmed them."""
        for _ in range(count):
            self._items.popleft()

    def pop(self) -> None:
        self.pop_many(1)

    def settle(self) -> bool:
        """Finish the bookkeeping of popped items now, if any is deferred (the spooled outbox
        writes their tombstones with its next ``add_many``); True if there was some."""
        return False

    def __len__(self) -> int:
        """Items not yet confirmed, or confirmed but not yet settled."""
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
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        #: Called (with the reason) instead of reconnecting when RabbitMQ refuses our
        #: credentials (see TaskConsumer.on_fatal); results stay spooled for the next start.
        self.on_fatal = on_fatal
        self.endpoint_id = endpoint_id
        self.status_details = status_details
        self.heartbeat_interval = heartbeat_interval or settings.heartbeat_interval
        self._outbox = outbox if outbox is not None else Outbox()
        self._cond = threading.Condition()
        #: Handed over by ``publish_result``, not yet in the outbox (guarded by ``_cond``).
        self._incoming: list[Outgoing] = []
        self._moving = 0  # taken from ``_incoming``, being added to the outbox
        self._stop = threading.Event()
        self._link: ConfirmingConnection | None = None
        self._next_heartbeat = 0.0
        self._thread = threading.Thread(target=self._run, name="outpost-publisher", daemon=True)

    # ------------------------------------------------------------------ public API
    def start(self, timeout: float = 30.0) -> None:
        """Connect and start the thread; raise :class:`BrokerError` if the first connect fails."""
        try:
            self._open()
        except RETRYABLE as exc:
            raise BrokerError(
                f"cannot connect to RabbitMQ at {self.settings.shown()} to publish results: "
                f"{exc!r}; is it running and reachable from this host? (set amqp_url in "
                "config.yaml to override the URL the service hands out)"
            ) from exc
        self._thread.start()

    def publish_result(
        self, result: ResultEnvelope, on_confirmed: Callable[[], None] | None = None
    ) -> None:
        """Queue ``result``; ``on_confirmed`` runs on the publisher thread once RabbitMQ has it.

        Returns at once: the publisher thread spools it (see the module docstring)."""
        with self._cond:
            self._incoming.append(Outgoing(result, on_confirmed))
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return self._pending()

    def drain(self, timeout: float) -> bool:
        """Wait until every queued result is confirmed; False if some are still pending."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending(), timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Send an ``offline`` heartbeat if connected, close, and join the thread."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        else:
            self._close()
        if not self._thread.is_alive():
            try:  # results handed over but never spooled: spool them, so they are not rerun
                self._spool()
                self._outbox.settle()
            except Exception:
                log.exception("could not spool the last results; their tasks run again")
        left = self.pending()
        if left:
            log.warning(
                "%d result(s) were not confirmed before stopping; they stay spooled and are "
                "published when the endpoint starts again",
                left,
            )

    # ------------------------------------------------------------------ thread
    def _pending(self) -> int:
        return len(self._incoming) + self._moving + len(self._outbox)

    def _open(self) -> None:
        name = f"outpost-endpoint {self.endpoint_id} results"
        with endpoint_errors():
            self._link = ConfirmingConnection.open(self.settings.target(name))
        self._next_heartbeat = 0.0

    def _close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()

    def _run(self) -> None:
        backoff = Backoff()
        while True:
            try:
                self._spool()  # also while RabbitMQ is away: results then wait on disk
                if self._link is None:
                    self._open()
                    log.info("result publisher reconnected to %s", self.settings.shown())
                backoff.reset()
                if self._stop.is_set():
                    self._send_status("offline")
                    self._close()
                    return
                self._step()
            except Exception as exc:  # a bug must not silently end publishing: reconnect instead
                reason = credentials_refused(exc, self.settings.url)
                if reason is not None and self.on_fatal is not None:
                    log.error("result publisher stops: %s", reason)
                    self._close()
                    self.on_fatal(reason)
                    return
                if isinstance(exc, RETRYABLE):
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

    def _spool(self) -> None:
        """Move every handed-over result into the outbox, in one call (one journal commit)."""
        with self._cond:
            items, self._incoming = self._incoming, []
            self._moving = len(items)
        if not items:
            return
        try:
            self._outbox.add_many(items)  # outside the lock: publish_result never waits on it
        except BaseException:
            with self._cond:
                self._incoming[:0] = items  # keep them: retried on the next turn
            raise
        finally:
            with self._cond:
                self._moving = 0

    def _step(self) -> None:
        """Publish a batch of pending results, or a heartbeat when due, or wait a little."""
        assert self._link is not None
        if time.monotonic() >= self._next_heartbeat:
            self._send_status("online")
            self._next_heartbeat = time.monotonic() + self.heartbeat_interval
        batch = self._outbox.peek_many(BATCH)
        if not batch:
            if self._outbox.settle():  # nothing new to spool them with: tombstones now
                with self._cond:
                    self._cond.notify_all()
                return
            with self._cond:
                if not self._incoming and not self._stop.is_set():
                    self._cond.wait(timeout=min(1.0, self.heartbeat_interval))
            if not self._link.is_open:
                raise pika.exceptions.AMQPConnectionError("lost the connection to RabbitMQ")
            return
        taken = self._publish_batch(batch)
        # The callbacks run before the items leave the outbox, so ``drain`` returning means
        # every confirmed result's ack has already been handed to the consumer.
        for item in batch[:taken]:
            if item.on_confirmed is not None:
                try:
                    item.on_confirmed()
                except Exception:
                    log.exception("confirm callback for task %s failed", item.result.task_id)
        if taken:
            self._outbox.pop_many(taken)
            with self._cond:
                self._cond.notify_all()
        if taken < len(batch):
            refused = batch[taken].result.task_id
            log.error(
                "RabbitMQ did not take the result of task %s (nack or unroutable); is the "
                "ingest queue bound to %s? retrying",
                refused,
                self.settings.result_exchange,
            )
            # Retry on a new connection: after a quorum queue's leader died, RabbitMQ (3.10)
            # may nack every later publish on the channel that knew the old leader.
            self._close()
            self._stop.wait(1.0)

    def _publish_batch(self, batch: list[Outgoing]) -> int:
        """Publish ``batch``, wait for all its confirms; how many, from the first, RabbitMQ
        took (the rest stay in the outbox and go again: a duplicate at worst)."""
        assert self._link is not None
        exchange, routing_key = self.settings.result_exchange, self.settings.result_routing_key
        messages = [
            Message(
                exchange,
                routing_key,
                item.body,
                persistent_json(item.result.TYPE, item.result.task_id),
                mandatory=True,
            )
            for item in batch
        ]
        taken = self._link.publish(messages, CONFIRM_TIMEOUT)
        return next((i for i, ok in enumerate(taken) if not ok), len(taken))

    def _send_status(self, state: str) -> None:
        try:
            details = self.status_details()
        except Exception as exc:
            details = {"error": f"status unavailable: {exc!r}"}
        status = EndpointStatus(endpoint_id=self.endpoint_id, state=state, details=details)
        if self._link is not None:
            # Not waited on: a heartbeat that is not routed is dropped (heartbeats are not
            # retried).
            self._link.send(
                Message(
                    self.settings.result_exchange,
                    self.settings.status_routing_key,
                    status.to_bytes(),
                    persistent_json(status.TYPE, None),
                )
            )


__all__ = ["BrokerError", "Outbox", "Outgoing", "ResultPublisher"]
