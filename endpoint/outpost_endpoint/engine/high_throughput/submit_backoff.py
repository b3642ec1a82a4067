"""Spacing out block submissions the scheduler refuses, and remembering why for the user.

A ``qsub``/``sbatch`` refusal (an exhausted allocation, a wrong queue, a job limit) does not go
away in a second; asking again at every scaling step only floods the scheduler and the log.
After each refusal the next submission waits exponentially longer (5 s, 10 s, ... up to 5
minutes), with jitter so that many endpoints do not ask in lockstep; the first success resets
it.  The last refusal is part of the engine's status -- ``outpost-endpoint status``, the
heartbeat (so ``outpost endpoints list``) and the SDK's timeout messages show it.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

#: Seconds before the first retry after a refusal, and the longest wait.
BACKOFF_BASE = 5.0
BACKOFF_CAP = 300.0


class SubmitBackoff:
    """When the next submission may go out, and the refusal that delayed it."""

    def __init__(self, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> None:
        self.base = base
        self.cap = cap
        self._lock = threading.Lock()
        self._failures = 0
        self._next_at = 0.0  # monotonic
        self._error: dict[str, Any] | None = None

    def ready(self) -> bool:
        """Whether a submission may be tried now."""
        return time.monotonic() >= self._next_at

    def failed(self, message: str) -> float:
        """Note a refusal; returns the seconds until the next try (half fixed, half jitter,
        so the spacing never collapses to nothing)."""
        with self._lock:
            ceiling = min(self.cap, self.base * 2 ** min(self._failures, 32))
            delay = ceiling / 2 + random.uniform(0, ceiling / 2)
            self._failures += 1
            self._next_at = time.monotonic() + delay
            since = self._error["since"] if self._error else time.time()
            self._error = {"message": message, "since": since, "attempts": self._failures}
            return delay

    def succeeded(self) -> None:
        with self._lock:
            self._failures = 0
            self._next_at = 0.0
            self._error = None

    def view(self) -> dict[str, Any] | None:
        """``{"message", "since" (epoch s), "attempts", "retry_in" (s)}``, or None if the last
        submission went through."""
        with self._lock:
            if self._error is None:
                return None
            retry_in = max(self._next_at - time.monotonic(), 0.0)
            return {**self._error, "retry_in": round(retry_in, 1)}
