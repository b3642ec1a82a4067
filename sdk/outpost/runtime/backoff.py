"""One backoff for every retry loop: the SDK's requests, reconnects to RabbitMQ, scheduler calls.

Exponential with full jitter (each delay uniform in ``[floor, min(cap, base * 2**attempt)]``)
so that a hundred endpoints or clients that lost the same server do not come back in lockstep.
"""

from __future__ import annotations

import random
import threading


def backoff_delay(attempt: int, base: float = 0.5, cap: float = 30.0, floor: float = 0.0) -> float:
    """Seconds before retry number ``attempt`` (0-based), never below ``floor``."""
    ceiling = min(cap, base * (2 ** min(attempt, 32)))
    return random.uniform(min(floor, ceiling), max(floor, ceiling))


class Backoff:
    """Stateful :func:`backoff_delay` for retry loops, interruptible through a stop event."""

    def __init__(self, base: float = 0.5, cap: float = 30.0, floor: float = 0.0) -> None:
        self.base = base
        self.cap = cap
        self.floor = floor
        self.attempt = 0

    def reset(self) -> None:
        """Call after a success: the next failure starts again from ``base``."""
        self.attempt = 0

    def next_delay(self) -> float:
        """The pause before the next attempt (and count this failure)."""
        delay = backoff_delay(self.attempt, self.base, self.cap, self.floor)
        self.attempt += 1
        return delay

    def wait(self, stop: threading.Event) -> bool:
        """Wait the next delay; True if ``stop`` was set meanwhile."""
        return stop.wait(self.next_delay())
