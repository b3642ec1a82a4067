"""Cross-process wake-ups: "these tasks finished", from the process that committed them to the
long-polls waiting in every other service process.

Why RabbitMQ (a fanout exchange ``P.wakeups``; each API process consumes it through its own
exclusive, auto-deleted queue) and not PostgreSQL LISTEN/NOTIFY:

* every service process already reaches RabbitMQ, with the shared runtime's connection
  (:class:`~outpost.runtime.amqp_connection.AmqpTarget`: TLS, fast failure, a list of brokers
  when the deployment has a cluster) and its backoff; LISTEN would need a second, long-lived
  database connection per process outside SQLAlchemy's pool, and a reconnect loop of its own;
* a NOTIFY is sent inside the committing transaction and PostgreSQL serialises every commit
  that notified on one global lock; here the committer hands the ids to this module's thread
  (a set union and a wake-up of that thread) and goes on -- the commit path never waits for
  the broker, and a broker that is away costs ingest nothing;
* a NOTIFY payload is limited to 8,000 bytes (about 200 task ids); a message is not.

Loss: a wake-up can be lost (the broker restarts, a subscriber reconnects, the bounded queue of
a stalled process drops its oldest).  That may only *delay* a long-poll, never hang it: each
subscribing process re-checks, every ``recheck_interval`` seconds and at once after every
(re)connect, which of the ids its long-polls wait for are finished -- one query per process,
not one per waiter -- and wakes those waiters.  Ids a process committed while its channel was
away are kept (up to :data:`MAX_PENDING`) and sent after the reconnect.

A process ignores its own messages (it woke its own long-polls when it committed).  SQLite
deployments are one process, so ``serve`` uses this only with a server database.

The same fanout carries the other direction too (messages of type :data:`AWAITED`): a poll for a
few ids that starts waiting in an API process names them, so that an ingest process stores
their results as soon as they arrive instead of after its batch age -- what an in-process
ingest does for its own polls (``ResultNotifier.awaiting``).  Only ingest processes listen.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.spec import Basic, BasicProperties

from outpost.runtime.amqp_connection import RETRYABLE, AmqpTarget
from outpost.runtime.backoff import Backoff
from outpost_service.broker.connection import target
from outpost_service.broker.topology import Topology
from outpost_service.config import ServiceConfig
from outpost_service.notifier import ResultNotifier
from outpost_service.store import Database
from outpost_service.store import tasks as task_store

log = logging.getLogger(__name__)

#: The message types (``type`` property): tasks finished; tasks a poll waits for.
FINISHED = "finished"
AWAITED = "awaited"
#: Task ids in one wake-up message (a commit of more is sent as several).
IDS_PER_MESSAGE = 2000
#: Ids kept for sending while the channel is away; beyond, the others' re-checks find them.
MAX_PENDING = 100_000
#: Messages a subscriber's queue holds before it drops the oldest (a stalled process must not
#: grow the broker's memory; what it misses its re-check finds).
QUEUE_MAX_LENGTH = 10_000


@dataclass(eq=False)
class WakeupChannel:
    """One process's end of the fanout: sends what ``notifier`` is told locally and, when
    ``subscribe``, wakes ``notifier``'s waiters with what the other processes commit.

    A standalone ingest process only sends (``subscribe=False``, no ``database``).
    """

    notifier: ResultNotifier
    target: AmqpTarget
    exchange: str
    database: Database | None = None
    subscribe: bool = True
    #: Listen for the ids other processes' polls await, and mark them urgent in ``notifier``
    #: (an ingest process).
    hears_awaited: bool = False
    #: Seconds between safety re-checks of the waiting ids (subscribers only).
    recheck_interval: float = 5.0
    #: Who sent a message (its ``app_id``): a process skips its own.
    origin: str = field(default_factory=lambda: f"{os.getpid()}-{secrets.token_hex(4)}")
    #: Set while connected (and, when subscribing, consuming); tests and ``/ready`` wait on it.
    connected: threading.Event = field(default_factory=threading.Event, init=False)
    #: Wake-up messages received from other processes.
    received: int = field(default=0, init=False)
    #: Safety re-checks run, and the ids they found finished (each a wake-up some message
    #: should have brought, unless it raced with the commit).
    rechecks: int = field(default=0, init=False)
    recheck_found: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._pending_awaited: set[str] = set()
        self._scheduled = False
        self._connection: BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._stop = threading.Event()
        self._recheck_due = threading.Event()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Connect in a daemon thread (and start the re-check thread when subscribing); from
        now on, what ``notifier`` is told locally is sent to the other processes."""
        self.notifier.relay = self.send
        runners = [("outpost-wakeups", self._run)]
        if self.subscribe:
            self.notifier.awaited_relay = self.send_awaited
            if self.database is None:
                raise ValueError("a subscribing WakeupChannel needs the database to re-check")
            self.notifier.shared_source = True
            runners.append(("outpost-wakeup-recheck", self._recheck_loop))
        for name, run in runners:
            thread = threading.Thread(target=run, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._recheck_due.set()
        self.notifier.relay = None
        self.notifier.awaited_relay = None
        connection = self._connection
        if connection is not None:  # wakes the consume loop at once
            with contextlib.suppress(Exception):  # already closed: the loop ends by itself
                connection.add_callback_threadsafe(lambda: None)
        for thread in self._threads:
            thread.join(timeout)

    # ------------------------------------------------------------------ sending
    def send(self, task_ids: Iterable[str]) -> None:
        """Queue ``task_ids`` for the other processes and return at once (any thread): the
        channel's thread sends everything queued since its last send as one message, so a
        burst of commits costs one publish."""
        self._queue(self._pending, task_ids)

    def send_awaited(self, task_ids: Iterable[str]) -> None:
        """Tell the ingest processes that a poll here waits for ``task_ids`` (any thread)."""
        self._queue(self._pending_awaited, task_ids)

    def _queue(self, pending: set[str], task_ids: Iterable[str]) -> None:
        with self._lock:
            room = MAX_PENDING - len(pending)
            if room <= 0:
                return  # the channel is away for long: the others' re-checks find them
            ids = list(task_ids)
            pending.update(ids[:room])
            if self._scheduled or self._connection is None:
                return
            self._scheduled = True
            connection = self._connection
        try:
            connection.add_callback_threadsafe(self._flush)
        except Exception:  # the connection just closed: the reconnect flushes
            with self._lock:
                self._scheduled = False

    def _flush(self) -> None:
        """Publish what is pending (on the channel's thread)."""
        with self._lock:
            finished, self._pending = list(self._pending), set()
            awaited, self._pending_awaited = list(self._pending_awaited), set()
            self._scheduled = False
        channel = self._channel
        if channel is None:
            with self._lock:
                self._pending.update(finished)
                self._pending_awaited.update(awaited)
            return
        for kind, ids, pending in (
            (FINISHED, finished, self._pending),
            (AWAITED, awaited, self._pending_awaited),
        ):
            properties = BasicProperties(
                app_id=self.origin, type=kind, content_type="application/json", delivery_mode=1
            )
            for start in range(0, len(ids), IDS_PER_MESSAGE):
                chunk = ids[start : start + IDS_PER_MESSAGE]
                try:
                    body = json.dumps(chunk).encode()
                    channel.basic_publish(self.exchange, "", body, properties)
                except Exception:
                    with self._lock:  # sent again after the reconnect
                        pending.update(ids[start:])
                    raise

    # ------------------------------------------------------------------ the connection
    def _run(self) -> None:
        backoff = Backoff(base=0.2, cap=5.0)
        while not self._stop.is_set():
            try:
                self._session()
                backoff.reset()
            except Exception as exc:
                self.connected.clear()
                delay = backoff.next_delay()
                if isinstance(exc, RETRYABLE):
                    problem = self.target.tls_problem(exc)
                    log.warning(
                        "wake-up channel lost RabbitMQ (%r)%s; reconnecting in %.1fs",
                        exc,
                        f": {problem}" if problem else "",
                        delay,
                    )
                else:
                    log.exception("wake-up channel failed; restarting in %.1fs", delay)
                self._stop.wait(delay)

    def _session(self) -> None:
        connection = self.target.connect()
        try:
            channel = connection.channel()
            channel.exchange_declare(self.exchange, exchange_type="fanout", durable=True)
            if self.subscribe or self.hears_awaited:
                declared = channel.queue_declare(
                    "",
                    exclusive=True,
                    auto_delete=True,
                    arguments={
                        "x-queue-type": "classic",
                        "x-max-length": QUEUE_MAX_LENGTH,
                        "x-overflow": "drop-head",
                    },
                )
                queue = declared.method.queue
                channel.queue_bind(queue, self.exchange)
                channel.basic_consume(queue, self._on_message, auto_ack=True)
            self._channel = channel
            with self._lock:
                self._connection = connection
                self._scheduled = True  # this flush takes what was queued while away
            self.connected.set()
            log.info("wake-up channel connected (%s)", self.exchange)
            if self.subscribe:  # what was sent while we were away is found by a re-check
                self._recheck_due.set()
            self._flush()
            while not self._stop.is_set():
                connection.process_data_events(time_limit=1.0)
        finally:
            self.connected.clear()
            with self._lock:
                self._connection = None
                self._channel = None
                self._scheduled = False
            if connection.is_open:
                with contextlib.suppress(*RETRYABLE):
                    connection.close()

    def _on_message(
        self,
        _channel: BlockingChannel,
        _method: Basic.Deliver,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        if properties.app_id == self.origin:
            return
        awaited = properties.type == AWAITED
        if not (self.hears_awaited if awaited else self.subscribe):
            return
        try:
            ids: Any = json.loads(body)
        except ValueError:
            log.error("ignoring a malformed wake-up message: %r", body[:200])
            return
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            log.error("ignoring a malformed wake-up message: %r", body[:200])
            return
        if awaited:
            self.notifier.mark_awaited(ids)
            return
        self.received += 1
        self.notifier.notify(ids, local=False)

    # ------------------------------------------------------------------ safety re-check
    def _recheck_loop(self) -> None:
        while not self._stop.is_set():
            self._recheck_due.wait(self.recheck_interval)
            self._recheck_due.clear()
            if self._stop.is_set():
                return
            try:
                self.recheck()
            except Exception as exc:  # the database away: waiters' deadlines still hold
                log.warning(
                    "wake-up re-check failed (%r); retrying in %gs", exc, self.recheck_interval
                )

    def recheck(self) -> list[str]:
        """Wake the waiters of every waited-for task that is finished (one query for all of
        this process's long-polls); returns those ids."""
        waiting = self.notifier.waiting_ids()
        self.rechecks += 1
        if not waiting or self.database is None:
            return []
        with self.database.read() as conn:
            found = task_store.finished_among(conn, waiting)
        if found:
            self.recheck_found += len(found)
            self.notifier.notify(found, local=False)
        return found


def wakeup_channel(
    config: ServiceConfig, notifier: ResultNotifier, database: Database, *, subscribe: bool
) -> WakeupChannel | None:
    """The channel of one service process for ``config``, not started; None on SQLite (one
    process: its in-process notifier sees every commit)."""
    if database.dialect == "sqlite":
        return None
    return WakeupChannel(
        notifier,
        target(config.broker_urls, config.amqp_tls, "outpost-service wake-ups"),
        Topology(config.amqp_prefix, config.queue_type).wakeup_exchange,
        database if subscribe else None,
        subscribe=subscribe,
        hears_awaited=not subscribe,
        recheck_interval=config.wakeup_recheck,
    )
