"""Detaching an endpoint from the terminal, and telling ``start`` when it is ready.

``start`` must exit 0 only once the daemon registered and connected, and otherwise print the
daemon's own error (service unreachable, bad token...).  So the daemon is a classic double fork
(``setsid`` in between, so it is no session leader and never gets a controlling terminal) whose
grandchild keeps the write end of a pipe; ``start`` reads one JSON line from it: ``{"ready":
true, "endpoint_id"}`` or ``{"ready": false, "error"}``.  End-of-file without a line means the
daemon died before it could say (the log has the reason).
"""

from __future__ import annotations

import json
import os
import select
import sys
import time
import traceback
from typing import Any

from outpost.protocol.conventions import outpost_home
from outpost.protocol.private_files import PRIVATE_UMASK, make_private_dir
from outpost_endpoint.errors import DaemonError
from outpost_endpoint.paths import EndpointPaths
from outpost_endpoint.runner import run_endpoint, setup_logging

#: How long ``start`` waits for the daemon's verdict (registration + connecting).
READY_TIMEOUT = 120.0


def start_daemon(
    paths: EndpointPaths, timeout: float = READY_TIMEOUT, *, force: bool = False
) -> str:
    """Detach a daemon serving ``paths``; return its endpoint id once it is ready."""
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    first = os.fork()
    if first == 0:  # pragma: no cover - runs in the child processes
        os.close(read_end)
        _become_daemon(paths, write_end, force)
    os.close(write_end)
    os.waitpid(first, 0)  # the intermediate child exits at once
    try:
        message = _read_verdict(read_end, timeout)
    finally:
        os.close(read_end)
    if message is None:
        raise DaemonError(
            f"the endpoint daemon did not report within {timeout:g} s or died while starting; "
            f"see {paths.log}"
        )
    if not message.get("ready"):
        raise DaemonError(str(message.get("error") or f"the daemon failed; see {paths.log}"))
    return str(message["endpoint_id"])


def _become_daemon(paths: EndpointPaths, write_end: int, force: bool) -> None:  # pragma: no cover
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.environ["OUTPOST_HOME"] = str(outpost_home())  # absolute, whatever the cwd
    # Unlike a system daemon we keep the working directory `start` was run from: tasks run
    # there and can import the modules found there (see engine/worker.py).  Everything the
    # daemon, its engine and its workers create is private (docs/SECURITY.md, "Files at
    # rest"); tasks inherit umask 077 too.
    os.umask(PRIVATE_UMASK)
    make_private_dir(paths.root)
    log_fd = os.open(paths.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(null_fd)
    os.close(log_fd)
    reporter = _Reporter(write_end)
    status = 1
    try:
        setup_logging()
        status = run_endpoint(
            paths,
            on_ready=lambda endpoint_id: reporter.send({"ready": True, "endpoint_id": endpoint_id}),
            on_error=lambda error: reporter.send({"ready": False, "error": error}),
            force=force,
        )
    except BaseException as exc:
        reporter.send({"ready": False, "error": f"the daemon crashed: {exc!r}; see {paths.log}"})
        traceback.print_exc()
    finally:
        reporter.send({"ready": False, "error": f"the daemon exited early; see {paths.log}"})
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


class _Reporter:
    """Sends the verdict once, then closes the pipe (``start`` stops waiting at EOF)."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def send(self, message: dict[str, Any]) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.write(fd, json.dumps(message).encode() + b"\n")
        except OSError:
            pass  # ``start`` gave up waiting; the log has everything
        finally:
            os.close(fd)


def _read_verdict(fd: int, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    try:
        message = json.loads(data.split(b"\n", 1)[0])
    except ValueError:
        return None
    return message if isinstance(message, dict) else None
