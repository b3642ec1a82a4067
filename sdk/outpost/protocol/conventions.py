"""Conventions every Outpost process follows: where its state lives, how it retries, and how
it names a secret-bearing URL in a message.

They live beside the messages because the SDK, the service and the endpoint must agree on them
(``OUTPOST_HOME`` is documented for users of all three) and the import rules let each of them
use ``outpost.protocol`` but not one another.
"""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def outpost_home() -> Path:
    """``$OUTPOST_HOME`` or ``~/.outpost``, absolute (daemons change directory)."""
    configured = os.environ.get("OUTPOST_HOME")
    home = Path(configured).expanduser() if configured else Path.home() / ".outpost"
    return home.absolute()


def backoff_delay(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds before retry number ``attempt`` (0-based): exponential, with full jitter so that
    many clients that lost the same server do not come back in lockstep."""
    return random.uniform(0, min(cap, base * (2 ** min(attempt, 32))))


class Backoff:
    """Stateful :func:`backoff_delay` for reconnect loops, interruptible through a stop event."""

    def __init__(self, base: float = 0.5, cap: float = 30.0) -> None:
        self.base = base
        self.cap = cap
        self._attempt = 0

    def reset(self) -> None:
        """Call after a success: the next failure starts again from ``base``."""
        self._attempt = 0

    def next_delay(self) -> float:
        delay = backoff_delay(self._attempt, self.base, self.cap)
        self._attempt += 1
        return delay

    def wait(self, stop: threading.Event) -> bool:
        """Wait the next delay; True if ``stop`` was set meanwhile."""
        return stop.wait(self.next_delay())


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
