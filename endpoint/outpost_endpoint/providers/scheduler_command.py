"""Running scheduler commands (``qsub``, ``qstat``, ``sbatch``, ...) the way a login node needs.

Login nodes are shared and schedulers are busy: ``qstat`` can hang for a minute, print a
half-written reply, or fail with "cannot connect to server" during a failover.  Every scheduler
call therefore runs with a timeout, its output is logged when it fails, and callers choose whether
to retry it with :func:`~outpost.runtime.backoff.backoff_delay` (full jitter, so a hundred
endpoints do not hammer the server in lockstep).  Submissions are *not* retried blindly: a
``qsub`` that timed out may still have created a job, and a second one would exceed
``max_blocks``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from outpost.runtime.backoff import backoff_delay
from outpost_endpoint.errors import ProviderError

log = logging.getLogger(__name__)

__all__ = ["CommandResult", "ProviderError", "SchedulerCommands"]

#: Longest stdout/stderr excerpt put in a log line or an error message.
_EXCERPT = 2000


@dataclass(frozen=True)
class CommandResult:
    """What one scheduler command did."""

    argv: tuple[str, ...]
    returncode: int  # -1 when it timed out or could not start
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def said(self) -> str:
        """What the command said (stderr, else stdout), short: for users, not for logs."""
        text = (self.stderr.strip() or self.stdout.strip() or self.describe()).splitlines()
        return " ".join(line.strip() for line in text[-3:])[:300]

    def describe(self) -> str:
        """One message naming the command, how it ended and the tail of its output."""
        cmd = " ".join(self.argv)
        if self.timed_out:
            how = "timed out"
        elif self.returncode == -1:
            how = "could not be started"
        else:
            how = f"exited with status {self.returncode}"
        return (
            f"`{cmd}` {how}; stdout: {_excerpt(self.stdout)!r}; stderr: {_excerpt(self.stderr)!r}"
        )


def _excerpt(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _EXCERPT else "…" + text[-_EXCERPT:]


@dataclass(kw_only=True)
class SchedulerCommands:
    """Runs scheduler commands with a timeout and optional retries.

    ``env`` is merged into the environment of each command (tests point ``PATH`` at an emulator);
    ``stop`` interrupts a backoff wait when the endpoint shuts down.
    """

    #: seconds one command may take before it is killed (and reported as timed out)
    timeout: float = 30.0
    #: how often :meth:`run_with_retries` runs a command again
    retries: int = 3
    backoff_base: float = 1.0
    backoff_cap: float = 30.0
    env: Mapping[str, str] | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, argv: Sequence[str], *, input_text: str | None = None) -> CommandResult:
        """Run once; never raises for a failing command (look at ``result.ok``)."""
        env = {**os.environ, **self.env} if self.env else None
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                env=env,
                start_new_session=True,  # a timeout kills the command and all it started
            )
        except OSError as exc:
            result = CommandResult(tuple(argv), -1, "", f"{type(exc).__name__}: {exc}")
        else:
            try:
                stdout, stderr = proc.communicate(input_text, timeout=self.timeout)
                result = CommandResult(tuple(argv), proc.returncode, stdout, stderr)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                stdout, stderr = proc.communicate()
                result = CommandResult(tuple(argv), -1, stdout, stderr, timed_out=True)
        if not result.ok:
            log.warning("scheduler command failed: %s", result.describe())
        return result

    def run_with_retries(
        self,
        argv: Sequence[str],
        *,
        accept: Callable[[CommandResult], bool] | None = None,
    ) -> CommandResult:
        """Run until ``accept(result)`` (default: exit status 0) or the retries are used up;
        returns the last result.  Only for idempotent commands (queries, cancels)."""
        accept = accept or (lambda r: r.ok)
        result = self.run(argv)
        attempt = 0
        while not accept(result) and attempt < self.retries:
            delay = backoff_delay(attempt, self.backoff_base, self.backoff_cap)
            log.info("retrying `%s` in %.1f s (attempt %d)", " ".join(argv), delay, attempt + 2)
            if self.stop.wait(delay):
                break
            attempt += 1
            result = self.run(argv)
        return result
