"""Readiness checks for ``GET /ready``: can this process reach its database and its broker?

A load balancer asks every few seconds and must never hang, so each check runs in a thread of
its own and the answer waits at most :data:`DEADLINE` seconds for it (a check still running
then reports "no answer within ..."); while a check runs, later asks wait for that same run
instead of starting another, and a finished answer is reused for :data:`REUSE` seconds -- so
a flood of ``/ready`` requests (the route needs no token) opens at most one database and one
broker connection per second per process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as NoAnswerYet
from dataclasses import dataclass

import sqlalchemy as sa

from outpost_service.broker.connection import target
from outpost_service.state import ServiceState

#: Seconds an answer waits for a check.
DEADLINE = 2.0
#: Seconds a finished check's outcome is reused.
REUSE = 1.0


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str
    seconds: float


class Probe:
    """One check (a callable that raises when the part is unreachable), deduplicated and
    bounded in time as the module docstring says."""

    def __init__(self, name: str, check: Callable[[], None]) -> None:
        self.name = name
        self._check = check
        self._lock = threading.Lock()
        self._running: Future[Outcome] | None = None
        self._last: tuple[float, Outcome] | None = None

    def start(self) -> Future[Outcome]:
        """The outcome to come: a recent one, the run in progress, or a new run."""
        with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] < REUSE:
                done: Future[Outcome] = Future()
                done.set_result(self._last[1])
                return done
            if self._running is None or self._running.done():
                self._running = Future()
                threading.Thread(
                    target=self._run, args=(self._running,), name=f"outpost-ready-{self.name}",
                    daemon=True,
                ).start()  # fmt: skip
            return self._running

    def _run(self, future: Future[Outcome]) -> None:
        started = time.monotonic()
        try:
            self._check()
            outcome = Outcome(True, "", time.monotonic() - started)
        except Exception as exc:
            text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            detail = f"{type(exc).__name__}: {text[0]}" if text else repr(exc)
            outcome = Outcome(False, detail, time.monotonic() - started)
        with self._lock:
            self._last = (time.monotonic(), outcome)
        future.set_result(outcome)


def outcomes(checks: list[Probe], deadline: float = DEADLINE) -> dict[str, Outcome]:
    """Every probe's outcome, the probes running at once; none waits past ``deadline``."""
    running = [(probe.name, probe.start()) for probe in checks]
    until = time.monotonic() + deadline
    found = {}
    for name, future in running:
        try:
            found[name] = future.result(timeout=max(0.0, until - time.monotonic()))
        except NoAnswerYet:
            found[name] = Outcome(False, f"no answer within {deadline:g}s", deadline)
    return found


def probes(state: ServiceState) -> tuple[Probe, Probe]:
    """The database and broker probes of ``state``'s process."""

    def database() -> None:
        with state.database.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def broker() -> None:
        config = state.config
        target(config.broker_urls, config.amqp_tls, name="outpost-service-ready").connect().close()

    return Probe("database", database), Probe("broker", broker)
