"""Riding out a service outage while submitting: retry for minutes, warn once, recover once.

A campaign script that submits 300 tasks must not shrink to 77 because the service restarted
for 15 seconds.  :class:`OutageRetry` wraps the submitter's calls (function registration and
``POST /v1/tasks``): while the service is unreachable, refuses connections or answers 5xx/429,
the call is repeated with capped, jittered backoff for up to ``retry_for`` seconds counted from
the start of the outage (one outage clock per executor, not per batch).  One warning line goes to
the log *and* stderr when the outage starts and one when the service answers again, so a user
sees the pause without a line per attempt.  When the outage outlasts ``retry_for``,
:class:`GiveUp` carries the last error to the submitter, which saves the unsent calls
(:mod:`.unsent`).  Retrying a submission is safe because every batch keeps its ``request_id``
across retries (the service answers a repeated id with the tasks it already stored).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from outpost.errors import ConfigurationError, ServiceError, ServiceUnavailableError
from outpost.runtime.backoff import backoff_delay

log = logging.getLogger("outpost.executor")

T = TypeVar("T")

#: The environment variable that sets the default ``Executor(submit_retry_for=...)``.
RETRY_FOR_ENV = "OUTPOST_SUBMIT_RETRY_FOR"
#: Default seconds an executor keeps retrying submits while the service is away.
DEFAULT_RETRY_FOR = 900.0
#: The longest pause between two attempts during an outage.
MAX_PAUSE = 15.0


def retry_for_setting(value: float | None) -> float:
    """``value``, else ``$OUTPOST_SUBMIT_RETRY_FOR``, else :data:`DEFAULT_RETRY_FOR`; checked."""
    source = "submit_retry_for"
    if value is None:
        text = os.environ.get(RETRY_FOR_ENV, "").strip()
        if not text:
            return DEFAULT_RETRY_FOR
        source = RETRY_FOR_ENV
        try:
            value = float(text)
        except ValueError:
            raise ConfigurationError(
                f"{RETRY_FOR_ENV} must be a number of seconds (e.g. 600), got {text!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigurationError(
            f"{source} is how many seconds to keep retrying submits while the service is "
            f"unreachable (>= 0, e.g. 600), got {value!r}"
        )
    return float(value)


def is_outage(exc: BaseException) -> bool:
    """True for errors that waiting can cure: no connection, 5xx, 429 (not a bad certificate)."""
    if isinstance(exc, ServiceUnavailableError):
        return exc.code != "tls_error"
    return isinstance(exc, ServiceError) and exc.status == 429


class GiveUp(Exception):
    """The outage outlasted ``retry_for``; ``error`` is the last failure (internal)."""

    def __init__(self, error: ServiceError, outage: float) -> None:
        super().__init__(str(error))
        self.error = error
        self.outage = outage


class Interrupted(Exception):
    """The executor was interrupted (Ctrl-C) while a call waited out an outage (internal)."""


class OutageRetry:
    """Repeats calls through an outage of up to ``retry_for`` seconds (see module docstring)."""

    def __init__(self, retry_for: float, url: str) -> None:
        self.retry_for = retry_for
        self._url = url
        self._since: float | None = None
        self._attempt = 0
        self._lock = threading.Lock()
        self._interrupted = threading.Event()

    @property
    def in_outage(self) -> bool:
        """True while the service is unreachable (from the first failure to the next answer)."""
        return self._since is not None

    def interrupt(self) -> None:
        """Stop waiting: a call waiting out an outage raises :class:`Interrupted` at once."""
        self._interrupted.set()

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()``, repeated while it fails with an outage error and the outage is younger
        than ``retry_for``; raises :class:`GiveUp` after that, other errors at once."""
        while True:
            if self._interrupted.is_set():
                raise Interrupted()
            try:
                value = fn()
            except ServiceError as exc:
                if not is_outage(exc):
                    raise
                pause = self._failed(exc)
                if self._interrupted.wait(pause):
                    raise Interrupted() from exc
                continue
            self._succeeded()
            return value

    def _failed(self, exc: ServiceError) -> float:
        now = time.monotonic()
        with self._lock:
            if self._since is None:
                self._since = now
                self._attempt = 0
                announce(
                    f"outpost: the service at {self._url} is unreachable ({_short(exc)}); "
                    f"keeping the submitted tasks and retrying for up to {self.retry_for:g} s "
                    f"(Executor(submit_retry_for=...) or {RETRY_FOR_ENV} sets this)"
                )
            elapsed = now - self._since
            if elapsed >= self.retry_for:
                raise GiveUp(exc, elapsed) from exc
            self._attempt += 1
            pause = backoff_delay(self._attempt, base=0.5, cap=MAX_PAUSE, floor=0.2)
            return min(pause, self.retry_for - elapsed)

    def _succeeded(self) -> None:
        with self._lock:
            if self._since is None:
                return
            elapsed = time.monotonic() - self._since
            self._since = None
        announce(
            f"outpost: the service at {self._url} answers again after {elapsed:.0f} s; "
            "submitting the held tasks"
        )


def stop_reason(why: BaseException | None, url: str, retry_for: float) -> str:
    """Why an executor stopped submitting, for :class:`SubmitAbandonedError`'s message."""
    if isinstance(why, GiveUp):
        return (
            f"the service at {url} stayed unreachable for {why.outage:.0f} s, longer than "
            f"submit_retry_for={retry_for:g} s (last error: {_short(why.error)})"
        )
    if isinstance(why, Interrupted):
        return "the executor was interrupted"
    return "submitting had already been given up"


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


def announce(line: str) -> None:
    """One line to the log and to stderr (a script without logging set up still shows it).

    Without any handler configured, logging's last-resort handler already writes the warning
    to stderr; printing it too would show it twice."""
    log.warning("%s", line)
    if not log.hasHandlers():
        return
    with contextlib.suppress(OSError, ValueError):  # stderr closed
        print(line, file=sys.stderr, flush=True)
