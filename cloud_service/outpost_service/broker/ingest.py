"""The result-ingest consumer: ``P.ingest`` → the ingest job (:mod:`outpost_service.jobs.ingest`,
the SQL store) → acknowledgement.

Messages are taken with a prefetch window and stored in batches: one transaction per batch,
committed, *then* acknowledged (``multiple=True`` up to the batch's last delivery tag), so a
crash between the two re-delivers and the store's duplicate rule makes the replay harmless.
When to commit: a result that some long-poll is waiting for *alone* (a poll for a handful of
ids, e.g. a single round trip; see ``ResultNotifier.awaiting``) is stored at once, so it pays no
batching delay; all other results are gathered for up to ``max_batch_age`` seconds (50 ms) or
``prefetch`` messages, so one commit (and the wake-ups it causes) is shared by many results --
a commit costs the service about as much CPU as ingesting a hundred results, and a client
polling for thousands of tasks gains nothing from a faster commit (its long-poll gathers
results for longer than that anyway).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import KW_ONLY, InitVar, dataclass, field
from typing import NamedTuple

from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.spec import Basic

from outpost.errors import ProtocolError
from outpost.protocol import EndpointStatus, ResultEnvelope, decode_message
from outpost.protocol.tls import TlsFiles
from outpost.runtime.amqp_connection import RETRYABLE
from outpost.runtime.backoff import Backoff
from outpost_service.broker.connection import target
from outpost_service.broker.topology import Topology
from outpost_service.jobs.ingest import IngestJob, Report
from outpost_service.store.database import database_away

log = logging.getLogger(__name__)


class _Entry(NamedTuple):
    """A decoded message not yet stored nor acked."""

    tag: int
    message: Report


@dataclass(eq=False)
class IngestConsumer:
    """Consumes results and heartbeats until :meth:`stop` is called."""

    job: IngestJob
    #: One URL, or the nodes of a cluster in the order to try.
    amqp_url: InitVar[str | Sequence[str]]
    topology: Topology
    _: KW_ONLY
    #: Most messages in one batch (and the channel's prefetch window).
    prefetch: int = 200
    #: Seconds of quiet on the queue after which the batch held is looked at again.
    idle_flush: float = 0.005
    #: Seconds a batch gathers results before it is stored.
    max_batch_age: float = 0.05
    #: Seconds a batch of heartbeats only (no result) gathers before it is stored: nobody
    #: waits for a heartbeat, and 1,000 endpoints send 100 a second -- one commit a second
    #: instead of twenty leaves the database's writer to submits (benchmarks/README.md,
    #: "Many endpoints").
    max_heartbeat_age: float = 1.0
    tls: InitVar[TlsFiles | None] = None
    #: Set each time the consumer is connected and consuming (tests wait on it).
    consuming: threading.Event = field(default_factory=threading.Event, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _connection: BlockingConnection | None = field(default=None, init=False)
    #: Pauses after each failed commit while the database is away (reset by a commit).
    _database_backoff: Backoff = field(
        default_factory=lambda: Backoff(base=0.5, cap=10.0), init=False
    )

    def __post_init__(self, amqp_url: str | Sequence[str], tls: TlsFiles | None) -> None:
        self._target = target(amqp_url, tls)
        # every node of a cluster, tried in order; bad TLS files fail now, at start
        self._params = self._target.all_parameters()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> threading.Thread:
        """Run in a daemon thread; results now wake this process's long-polls directly."""
        if self.job.notifier is not None:
            self.job.notifier.local_source = True
        self._thread = threading.Thread(target=self.run, name="outpost-ingest", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def run(self) -> None:
        """Consume until stopped, reconnecting with backoff when the broker goes away."""
        backoff = Backoff(base=0.2, cap=5.0)
        while not self._stop.is_set():
            try:
                self._consume()
                backoff.reset()
            except Exception as exc:
                self.consuming.clear()
                delay = backoff.next_delay()
                if isinstance(exc, RETRYABLE):
                    # retried too: the broker may have a new certificate
                    problem = self._target.tls_problem(exc)
                    log.warning(
                        "ingest lost RabbitMQ (%r)%s; reconnecting in %.1fs",
                        exc,
                        f": {problem}" if problem else "",
                        delay,
                    )
                else:
                    log.exception("ingest failed; restarting in %.1fs", delay)
                self._stop.wait(delay)

    # ------------------------------------------------------------------ consuming
    def _consume(self) -> None:
        self._connection = connection = BlockingConnection(self._params)
        try:
            channel = connection.channel()
            self.topology.declare_core(channel)
            channel.basic_qos(prefetch_count=self.prefetch)
            log.info("ingest consuming %s", self.topology.ingest_queue)
            self.consuming.set()
            batch: list[_Entry] = []
            started, results = 0.0, False  # results: the batch holds a result (not only beats)

            def flush_if_awaited() -> None:
                # Runs on this thread, inside the consume loop's wait: a long-poll that started
                # after its result arrived here gets it without waiting for the next tick.
                if batch and self._awaited(batch):
                    self._flush(channel, list(batch))
                    batch.clear()

            notifier = self.job.notifier
            if notifier is not None:
                notifier.on_urgent = lambda: connection.add_callback_threadsafe(flush_if_awaited)
            for method, _properties, body in channel.consume(
                self.topology.ingest_queue, inactivity_timeout=self.idle_flush
            ):
                now = time.monotonic()
                if method is not None:
                    if not batch:
                        started, results = now, False
                    self._take(channel, batch, method, body)
                    if batch and isinstance(batch[-1].message, ResultEnvelope):
                        results = True
                    # Someone is waiting for exactly this result: store it now.
                    urgent = bool(batch) and self._awaited(batch[-1:])
                else:  # a quiet moment: did a waiter arrive for something we hold?
                    urgent = bool(batch) and self._awaited(batch)
                age = self.max_batch_age if results else self.max_heartbeat_age
                if batch and (urgent or len(batch) >= self.prefetch or now - started >= age):
                    self._flush(channel, list(batch))
                    batch.clear()
                if method is None:
                    self.job.purge_if_due()
                    if self._stop.is_set():
                        break
            channel.cancel()
        finally:
            self.consuming.clear()
            if self.job.notifier is not None:
                self.job.notifier.on_urgent = None
            if connection.is_open:
                connection.close()

    def _awaited(self, entries: list[_Entry]) -> bool:
        return self.job.awaited([e.message for e in entries])

    def _take(
        self, channel: BlockingChannel, batch: list[_Entry], method: Basic.Deliver, body: bytes
    ) -> None:
        """Decode one message into ``batch``, or dead-letter it with the reason.

        The routing key is the sender's identity: RabbitMQ's topic permissions let an endpoint
        publish only under ``<its id>.result`` / ``<its id>.status``.  So a body that claims
        another endpoint than its routing key names is a forgery (endpoint A posing as B to
        finish B's tasks) and is refused, whatever the body says.
        """
        tag = method.delivery_tag
        try:
            message = decode_message(body)
        except ProtocolError as exc:
            self._reject(channel, tag, str(exc), body)
            return
        except Exception as exc:  # a decoder bug must not stop ingest: keep the message
            self._reject(channel, tag, f"cannot decode: {exc!r}", body)
            return
        if isinstance(message, (ResultEnvelope, EndpointStatus)):
            suffix = "result" if isinstance(message, ResultEnvelope) else "status"
            expected = f"{message.endpoint_id}.{suffix}"
            if method.routing_key != expected:
                self._reject(
                    channel,
                    tag,
                    f"routing key {method.routing_key!r} does not match the sender the body "
                    f"names ({expected!r}); an endpoint may only report for itself",
                    body,
                )
                return
            if isinstance(message, EndpointStatus):
                message = self.job.bounded(message, len(body))
            batch.append(_Entry(tag, message))
        else:
            self._reject(channel, tag, f"a {message.TYPE!r} message does not belong here", body)

    @staticmethod
    def _reject(channel: BlockingChannel, tag: int, reason: str, body: bytes) -> None:
        log.error("dead-lettering ingest message (%s): %r", reason, body[:200])
        channel.basic_reject(tag, requeue=False)

    def _flush(self, channel: BlockingChannel, batch: list[_Entry]) -> None:
        """Store ``batch`` in one transaction, then ack it.

        If the database is unreachable the batch goes back to the queue.  Any other failure
        may be one poisonous message: the batch is retried one message at a time and a
        message that cannot be stored on its own is dead-lettered, so it cannot block ingest.
        """
        last = batch[-1].tag
        try:
            self.job.store([e.message for e in batch])
        except Exception as exc:
            if not database_away(exc):
                self._store_one_by_one(channel, batch, exc)
                return
            delay = self._database_backoff.next_delay()
            log.warning(
                "ingest cannot reach the database (%s); returned %d message(s) to the queue, "
                "retrying in %.1fs",
                str(getattr(exc, "orig", None) or exc).strip().split("\n")[0],
                len(batch),
                delay,
            )
            channel.basic_nack(last, multiple=True, requeue=True)
            self._stop.wait(delay)  # a backoff (stop() ends it), not a synchronisation
            return
        self._database_backoff.reset()
        channel.basic_ack(last, multiple=len(batch) > 1)

    def _store_one_by_one(
        self, channel: BlockingChannel, batch: list[_Entry], exc: Exception
    ) -> None:
        """A batch failed for another reason than an unreachable database: maybe one
        poisonous message.  Store each alone; one that fails alone is dead-lettered."""
        if len(batch) > 1:
            log.warning("ingest could not store a batch (%r); retrying one by one", exc)
            for entry in batch:
                self._flush(channel, [entry])
            return
        self._reject(
            channel, batch[-1].tag, f"cannot be stored: {exc!r}", repr(batch[0].message).encode()
        )
