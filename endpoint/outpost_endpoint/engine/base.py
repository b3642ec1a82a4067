"""The engine interface: what the endpoint's AMQP link needs from whatever runs tasks.

Promise: the future returned by :meth:`Engine.submit` resolves to a :class:`ResultEnvelope` --
failures (exceptions, timeouts, lost workers, cancels) are results, never exceptions.  The one
exception is :meth:`Engine.shutdown`: a task it abandons (never started, or still running when
the grace period ends) has its future *cancelled* (``future.cancelled()`` is true), which means
"not run, no answer": the caller keeps the task journaled, and the endpoint's next start runs it
again.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from outpost.protocol import ResultEnvelope, TaskEnvelope


class Engine(abc.ABC):
    """Runs tasks; see the module docstring for the promise its futures keep."""

    @abc.abstractmethod
    def start(self) -> None:
        """Start the workers; tasks may be submitted afterwards."""

    @abc.abstractmethod
    def submit(self, task: TaskEnvelope) -> Future[ResultEnvelope]:
        """Queue ``task``; the future resolves to its result."""

    @abc.abstractmethod
    def cancel(self, task_id: str) -> bool:
        """Cancel ``task_id`` if it has not finished; its future then resolves to a
        ``cancelled`` result.  False if the task is unknown or already done."""

    @abc.abstractmethod
    def status(self) -> dict[str, Any]:
        """At least ``workers``, ``idle`` and ``outstanding`` (queued + running tasks)."""

    @abc.abstractmethod
    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop accepting tasks; cancel the futures of tasks that never started; if ``wait``,
        let running tasks finish for up to ``timeout`` seconds, then kill them (their futures
        are cancelled too)."""


class Cancellable(Protocol):
    """An engine's entry for one task, remembering whether a cancel was asked."""

    cancel_requested: bool


Entry = TypeVar("Entry", bound=Cancellable)


def first_cancel(entries: Mapping[str, Entry], task_id: str) -> Entry | None:
    """The entry of ``task_id``, marked ``cancel_requested``, if this is the first cancel
    asked for it; None if the task is unknown or already being cancelled (a task is cancelled
    once, however often it is asked).  Call it holding the engine's lock."""
    entry = entries.get(task_id)
    if entry is None or entry.cancel_requested:
        return None
    entry.cancel_requested = True
    return entry
