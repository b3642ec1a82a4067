"""``EndpointService``: the running endpoint -- engine, task consumer and result publisher.

It knows nothing about daemons, pid files or HTTP: give it an endpoint id, the AMQP settings and
an engine (tests do exactly that against a real RabbitMQ).  :meth:`stop` is the graceful
shutdown the daemon runs on SIGTERM: no new deliveries, running tasks get ``grace`` seconds,
finished results are published, and anything unfinished stays in the task journal (see
:mod:`outpost_endpoint.journal`) and is replayed when the endpoint starts again -- nothing is
lost.  The journal (``journal_path``) should live in the endpoint directory; without one an
in-memory journal is used, which does not survive the process (tests only).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from outpost_endpoint.amqp.connection import AmqpSettings
from outpost_endpoint.amqp.result_publisher import ResultPublisher
from outpost_endpoint.amqp.task_consumer import TaskConsumer
from outpost_endpoint.engine.base import Engine
from outpost_endpoint.journal import Journal
from outpost_endpoint.results import HOSTNAME
from outpost_endpoint.spool import SpooledOutbox

log = logging.getLogger(__name__)


class EndpointService:
    """Wires engine + AMQP link for one endpoint id."""

    def __init__(
        self,
        endpoint_id: str,
        settings: AmqpSettings,
        engine: Engine,
        *,
        prefetch: int,
        heartbeat_interval: float | None = None,
        journal_path: Path | str | None = None,
        allowed_functions: Collection[str] | None = None,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self.endpoint_id = endpoint_id
        self.settings = settings
        self.engine = engine
        self.journal = Journal(journal_path if journal_path is not None else ":memory:")
        self.publisher = ResultPublisher(
            settings,
            endpoint_id,
            status_details=self.details,
            heartbeat_interval=heartbeat_interval,
            outbox=SpooledOutbox(self.journal),
            on_fatal=on_fatal,
        )
        self.consumer = TaskConsumer(
            settings,
            endpoint_id,
            engine,
            self.publisher,
            prefetch=prefetch,
            journal=self.journal,
            allowed_functions=allowed_functions,
            on_fatal=on_fatal,
        )
        self._stopped = threading.Event()

    def details(self) -> dict[str, Any]:
        """What a heartbeat reports: engine load and where we run."""
        status = self.engine.status()
        return {
            "hostname": HOSTNAME,
            # with the hostname: lets a new start on this host tell its dead predecessor
            # (force past the service's 409) from a live instance (see runner.register)
            "pid": os.getpid(),
            "workers": status.get("workers"),
            "idle": status.get("idle"),
            "outstanding_tasks": status.get("outstanding"),
            "engine": status,
            # why blocks cannot be had, for `outpost endpoints list` and SDK timeouts
            "provider_error": status.get("provider_error"),
            "results_pending": self.publisher.pending(),
            "journal": self.journal.counts(),
        }

    def start(self) -> None:
        """Start the engine, then connect; raise (after cleaning up) if RabbitMQ is unreachable."""
        self.engine.start()
        try:
            self.publisher.start()
            self.consumer.start()
        except BaseException:
            self.publisher.stop()
            self.engine.shutdown(wait=False)
            raise
        log.info("endpoint %s consuming %s", self.endpoint_id, self.settings.task_queue)

    def stop(self, grace: float = 30.0) -> None:
        """Graceful shutdown; see the module docstring.  Safe to call more than once."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("stopping: no new tasks; running tasks have %g s to finish", grace)
        self.consumer.stop_consuming()
        self.engine.shutdown(wait=True, timeout=grace)
        if not self.publisher.drain(timeout=max(grace, 10.0)):
            log.warning("stopping with %d unconfirmed result(s)", self.publisher.pending())
        self.consumer.close()
        self.publisher.stop()
        left = self.journal.counts()
        if left["received"]:
            log.info(
                "%d unfinished task(s) stay in the journal for the next start", left["received"]
            )
        self.journal.close()
        log.info("endpoint %s stopped", self.endpoint_id)
