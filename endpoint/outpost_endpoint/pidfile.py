"""``endpoint.pid``: which process runs an endpoint, and whether that is still true.

A pid file outlives crashes, so a pid in it proves nothing: the process may be gone, or be a
zombie nobody reaped (common in containers whose PID 1 does not reap orphans).  Both are
*stale* and treated as "not running".
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from pathlib import Path

from outpost.runtime.files import write_private


def process_state(pid: int) -> str | None:
    """The one-letter state from ``/proc/PID/stat`` (``R``, ``S``, ``Z``...), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None if not _exists(pid) else "?"
    # The command name is in parentheses and may itself contain ") ", so split at the last one.
    return stat.rsplit(")", 1)[1].split()[0]


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_alive(pid: int) -> bool:
    """True if ``pid`` is a live process (not gone, not a zombie)."""
    state = process_state(pid)
    return state is not None and state not in ("Z", "X")


def read_pid(path: Path) -> int | None:
    """The pid in ``path`` if that process is alive; None if missing, garbled or stale."""
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid > 0 and is_alive(pid) else None


def write_pid(path: Path, pid: int | None = None) -> None:
    write_private(path, f"{pid or os.getpid()}\n")


def remove_pid(path: Path, pid: int | None = None) -> None:
    """Remove ``path`` if it names ``pid`` (default: this process) or a dead process."""
    try:
        recorded = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        recorded = None
    if recorded is None or recorded == (pid or os.getpid()) or not is_alive(recorded):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` exits (or is a zombie); False on timeout.

    Uses a pidfd where the kernel has them (woken exactly at exit); otherwise checks /proc
    at short intervals.
    """
    deadline = time.monotonic() + timeout
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            while is_alive(pid):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                poller.poll(min(remaining, 1.0) * 1000)
            return True
        finally:
            os.close(fd)
    while is_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def terminate(pid: int, timeout: float) -> bool:
    """SIGTERM, wait up to ``timeout``, then SIGKILL.  True if it exited on SIGTERM."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_gone(pid, timeout):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_gone(pid, 10)
    return False
