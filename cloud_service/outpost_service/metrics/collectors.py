"""The figures read when ``/metrics`` is scraped: tasks by state, queue depths, long-polls.

Each is a prometheus_client *custom collector* whose answer is cached for :data:`CACHE_SECONDS`
(per process), so a scrape costs at most one grouped count in the database and one call to
RabbitMQ's management API every few seconds, however many scrapers ask.  A source that cannot
answer leaves its metric out of that scrape (and says so in the log) instead of failing the
scrape: ``/metrics`` must keep working while the database or the broker is away -- that is when
an operator looks at it.  A broker without the management API gives no depth metric at all, and
is asked again only every :data:`UNAVAILABLE_RETRY` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from outpost.protocol import TaskState
from outpost_service.broker.admin import BrokerAdmin
from outpost_service.errors import BrokerError
from outpost_service.state import ServiceState, broker_admin
from outpost_service.store import schema

log = logging.getLogger(__name__)

#: Seconds a scraped figure is reused.
CACHE_SECONDS = 5.0
#: Seconds before a source that failed is asked again.
UNAVAILABLE_RETRY = 30.0
#: Seconds one management API call may take during a scrape.
BROKER_TIMEOUT = 2.0

Value = TypeVar("Value")


class Cached(Generic[Value]):
    """``read()`` at most every :data:`CACHE_SECONDS` (:data:`UNAVAILABLE_RETRY` after a
    failure, when :meth:`get` answers None); one caller reads while the others wait for it."""

    def __init__(self, read: Callable[[], Value], what: str) -> None:
        self._read = read
        self._what = what
        self._lock = threading.Lock()
        self._value: Value | None = None
        self._until = 0.0

    def get(self) -> Value | None:
        with self._lock:
            now = time.monotonic()
            if now >= self._until:
                try:
                    self._value = self._read()
                    self._until = now + CACHE_SECONDS
                except Exception as exc:  # any failure of the source: no figure this time
                    log.warning("metrics: cannot read %s (%s); left out", self._what, exc)
                    self._value = None
                    self._until = now + UNAVAILABLE_RETRY
            return self._value


class TaskStates(Collector):
    """``outpost_tasks{state}``: tasks stored, by state (one ``GROUP BY`` on an index)."""

    def __init__(self, state: ServiceState) -> None:
        self._cache = Cached(lambda: _count_states(state), "task counts from the database")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self._cache.get()
        if counts is None:
            return
        family = GaugeMetricFamily(
            "outpost_tasks", "Tasks stored in the service's database, by state.", labels=["state"]
        )
        every_state = {state.value: 0 for state in TaskState}  # a series for each, even at 0
        for name, count in sorted({**every_state, **counts}.items()):
            family.add_metric([name], count)
        yield family

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return ()


def _count_states(state: ServiceState) -> dict[str, int]:
    tasks = schema.tasks
    with state.database.read() as conn:
        rows = conn.execute(sa.select(tasks.c.state, sa.func.count()).group_by(tasks.c.state))
        return {str(name): int(count) for name, count in rows}


class QueueDepths(Collector):
    """Messages ready and unacknowledged, and consumers, of every queue of the deployment.

    Task queues are labelled ``queue="tasks"`` and ``endpoint_id``, never by their name: the
    name carries a secret tag (broker/topology.py) that this page must not publish."""

    def __init__(self, state: ServiceState) -> None:
        self._state = state
        self._admin: BrokerAdmin | None = state.admin
        self._cache = Cached(self._read, "queue depths from RabbitMQ's management API")

    def _read(self) -> list[tuple[str, str, int, int, int]]:
        if self._admin is None:  # broker_auth 'shared': try the management API all the same
            self._admin = broker_admin(self._state.config, self._state.topology)
        try:
            queues = self._admin.queues(timeout=BROKER_TIMEOUT)
        except BrokerError as exc:
            raise BrokerError(str(exc).split(";")[0]) from exc  # the cause, not the advice
        prefix = self._state.topology.prefix + "."
        tasks = self._state.topology.task_exchange + "."
        found = []
        for queue in queues:
            name = str(queue["name"])
            if name.startswith(tasks):
                kind, endpoint_id = "tasks", name[len(tasks) :].split(".")[0]
            else:
                kind, endpoint_id = name[len(prefix) :], ""
            found.append(
                (
                    kind,
                    endpoint_id,
                    int(queue.get("messages_ready") or 0),
                    int(queue.get("messages_unacknowledged") or 0),
                    int(queue.get("consumers") or 0),
                )
            )
        return found

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queues = self._cache.get()
        if queues is None:
            return
        labels = ["queue", "endpoint_id"]
        ready = GaugeMetricFamily(
            "outpost_queue_messages_ready",
            "Messages waiting in a RabbitMQ queue of the deployment (queue 'ingest': results "
            "not yet taken by ingest; 'tasks': an endpoint's tasks not yet delivered).",
            labels=labels,
        )
        unacked = GaugeMetricFamily(
            "outpost_queue_messages_unacknowledged",
            "Messages delivered from a queue but not yet acknowledged by its consumer.",
            labels=labels,
        )
        consumers = GaugeMetricFamily(
            "outpost_queue_consumers", "Consumers of a queue.", labels=labels
        )
        for kind, endpoint_id, n_ready, n_unacked, n_consumers in queues:
            ready.add_metric([kind, endpoint_id], n_ready)
            unacked.add_metric([kind, endpoint_id], n_unacked)
            consumers.add_metric([kind, endpoint_id], n_consumers)
        yield from (ready, unacked, consumers)

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return ()
