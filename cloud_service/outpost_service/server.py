"""Running the service: the HTTP(S) server (http_server.py), plus its jobs in threads: the
ingest consumer (fed from RabbitMQ) and the republish sweeper.

SIGTERM and SIGINT stop it cleanly: long-polls are released, the server stops accepting and
finishes its requests, ingest stops after acknowledging what it stored, connections close.
"""

from __future__ import annotations

import functools
import logging
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from outpost_service.app import create_app
from outpost_service.broker.ingest import IngestConsumer
from outpost_service.broker.wakeups import wakeup_channel
from outpost_service.config import DEFAULT_THREADS, ServiceConfig
from outpost_service.dependencies import publish_released
from outpost_service.http_server import build_server
from outpost_service.jobs.ingest import IngestJob
from outpost_service.jobs.sweep import Sweeper, standalone_sweeper
from outpost_service.longpoll import pool_threads
from outpost_service.notifier import ResultNotifier
from outpost_service.state import EXTENSION, ServiceState, prepare_broker

log = logging.getLogger(__name__)


def make_ingest(
    config: ServiceConfig,
    state: ServiceState | None = None,
    notifier: ResultNotifier | None = None,
) -> IngestConsumer:
    """An ingest consumer for ``config``, wired to ``state``'s notifier when given (else to
    ``notifier``)."""
    from outpost_service.broker.topology import Topology
    from outpost_service.store import Database

    database = state.database if state else Database(config.database_url)
    if state is None:
        database.ensure_schema()
    job = IngestJob(
        database,
        state.notifier if state else notifier,
        retention=config.result_retention,
        purge_interval=config.purge_interval,
        max_details_bytes=config.max_metadata_bytes,
        publish_released=functools.partial(publish_released, state) if state else None,
    )
    return IngestConsumer(
        job,
        config.broker_urls,
        state.topology if state else Topology(config.amqp_prefix, config.queue_type),
        prefetch=config.ingest_prefetch,
        tls=config.amqp_tls,
    )


def _on_signals(handler: Callable[[int, FrameType | None], Any]) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)


def serve(
    config: ServiceConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    threads: int = DEFAULT_THREADS,
    ingest: bool = True,
) -> None:
    """Serve until SIGTERM/SIGINT; prints ``outpost-service listening on http(s)://HOST:PORT``
    (https when ``config`` has ``tls_cert`` and ``tls_key``)."""
    # Waiting long-polls hold a thread each for up to a minute: they get threads of their own
    # on top of --threads, so ordinary requests always find one (longpoll.py).
    slots = config.longpoll_slots
    app = create_app(config)
    state: ServiceState = app.extensions[EXTENSION]
    try:  # binds the port and loads the certificate: errors before any thread starts
        server = build_server(
            app,
            host=host,
            port=port,
            threads=pool_threads(threads, slots),
            tls_cert=config.tls_cert,
            tls_key=config.tls_key,
            connection_limit=config.connection_limit,
            channel_timeout=config.channel_timeout,
        )
    except BaseException:
        state.close()
        raise
    prepare_broker(config, state.admin)
    consumer = make_ingest(config, state) if ingest else None
    sweeper = Sweeper(state, republish_after=config.republish_after)
    # Results committed by other processes wake this one's long-polls (broker/wakeups.py).
    wakeups = wakeup_channel(config, state.notifier, state.database, subscribe=True)

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received signal %d; shutting down", signum)
        state.notifier.close()
        raise SystemExit(0)

    _on_signals(stop)
    if wakeups is not None:
        wakeups.start()
    if consumer is not None:
        consumer.start()
    sweeper.start()
    log.info(
        "%d request threads, and %d more for waiting long-polls (%d per user); up to %d "
        "connections, closed after %gs of silence",
        threads,
        slots,
        config.longpoll_per_user,
        config.connection_limit,
        config.channel_timeout,
    )
    print(f"outpost-service listening on {server.url}")
    sys.stdout.flush()
    try:
        server.serve()  # returns or raises after SystemExit/KeyboardInterrupt
    finally:
        sweeper.stop()
        if consumer is not None:
            consumer.stop()
        if wakeups is not None:
            wakeups.stop()
        server.close()
        state.close()
        log.info("outpost-service stopped")


def run_ingest(config: ServiceConfig) -> None:
    """Run only the ingest consumer (``outpost-service ingest``) until SIGTERM/SIGINT, with
    a sweeper beside it (one sweeps per deployment at a time: jobs/sweep.py)."""
    prepare_broker(config)
    sweeper = standalone_sweeper(config)
    # What this process commits (results, expiries) wakes the API processes' long-polls.
    notifier = sweeper.state.notifier
    consumer = make_ingest(config, notifier=notifier)
    wakeups = wakeup_channel(config, notifier, consumer.job.database, subscribe=False)
    _on_signals(lambda _signum, _frame: consumer.stop(timeout=0))
    if wakeups is not None:
        wakeups.start()
    sweeper.start()
    print(f"outpost-service ingest consuming {consumer.topology.ingest_queue}")
    sys.stdout.flush()
    try:
        consumer.run()
    finally:
        sweeper.stop()
        if wakeups is not None:
            wakeups.stop()
        consumer.job.database.dispose()
