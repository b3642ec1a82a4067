"""``/metrics``'s text, and the request hooks that time every route.

Single process (no ``PROMETHEUS_MULTIPROC_DIR``): the recorded metrics of this process
(prometheus_client's default registry, with its process and Python collectors) followed by
this app's scrape-time collectors.  Multiprocess mode: a fresh registry per scrape that sums
every process's files (prometheus_client's ``MultiProcessCollector``, the documented way) plus
the scrape-time collectors, which read shared sources (database, broker) and so are the same
whichever process answers.  A process manager that restarts workers should call
:func:`process_exited` for each dead one (gunicorn: its ``child_exit`` hook), so that its
"live" gauges stop counting.
"""

from __future__ import annotations

import os
import threading
import time

from flask import Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from outpost_service.metrics import instruments
from outpost_service.metrics.collectors import QueueDepths, TaskStates
from outpost_service.state import EXTENSION, ServiceState

#: ``app.extensions`` key of the app's scrape-time collectors.
_COLLECTORS = "outpost_metrics"
#: Seconds between refreshes of this process's long-poll gauge in multiprocess mode.
LONGPOLL_REFRESH = 1.0


def install(app: Flask) -> None:
    """Time every request of ``app``.  Call before any other ``before_request`` hook (the
    authentication's), so a request refused there is timed too."""
    app.before_request(_started)
    app.after_request(_observed)


def _started() -> None:
    g.outpost_started = time.perf_counter()
    if instruments.MULTIPROC_DIR:
        _LongPollRefresher.ensure(current_app.extensions[EXTENSION])


def _observed(response: Response) -> Response:
    started = g.get("outpost_started")
    if started is not None:
        rule = request.url_rule.rule if request.url_rule is not None else "(no route)"
        instruments.REQUEST_SECONDS.labels(rule, request.method, str(response.status_code)).observe(
            time.perf_counter() - started
        )
    return response


def render(app: Flask) -> tuple[bytes, str]:
    """The exposition text of ``app``'s process (all of this machine's processes in
    multiprocess mode) and its content type."""
    state: ServiceState = app.extensions[EXTENSION]
    collectors = app.extensions.get(_COLLECTORS)
    if collectors is None:
        collectors = app.extensions[_COLLECTORS] = (TaskStates(state), QueueDepths(state))
    instruments.LONGPOLLS_WAITING.set(state.longpolls.waiting)
    shared = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        shared.register(collector)
    if instruments.MULTIPROC_DIR:
        multiprocess.MultiProcessCollector(shared)
        return generate_latest(shared), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY) + generate_latest(shared), CONTENT_TYPE_LATEST


def process_exited(pid: int) -> None:
    """Forget the live gauges of the dead process ``pid`` (multiprocess mode only)."""
    if instruments.MULTIPROC_DIR:
        multiprocess.mark_process_dead(pid)


class _LongPollRefresher:
    """Multiprocess mode: each process writes its count of waiting long-polls into its own
    gauge file every :data:`LONGPOLL_REFRESH` seconds (a scrape answered by another process
    cannot ask this one).  One daemon thread per process, started by its first request (so a
    server that forks its workers after creating the app starts one in each worker)."""

    _lock = threading.Lock()
    _pid = 0

    @classmethod
    def ensure(cls, state: ServiceState) -> None:
        if cls._pid == os.getpid():
            return
        with cls._lock:
            if cls._pid == os.getpid():
                return
            cls._pid = os.getpid()
            threading.Thread(
                target=cls._run, args=(state,), name="outpost-metrics", daemon=True
            ).start()

    @staticmethod
    def _run(state: ServiceState) -> None:
        while True:
            instruments.LONGPOLLS_WAITING.set(state.longpolls.waiting)
            time.sleep(LONGPOLL_REFRESH)  # a sampling period, not a synchronisation
