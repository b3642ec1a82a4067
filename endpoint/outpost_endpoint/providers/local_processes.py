"""Finding and ending the local provider's processes by the mark they carry.

Every process of a local block (the block's shell, its managers, their workers) inherits
``OUTPOST_RUN_DIR=<the engine's run dir>`` from the block's environment, so the processes of
one endpoint can be found in ``/proc`` even after the daemon that started them is gone (killed
with ``-9``): a new start ends them, and tests check that ``stop`` leaves none.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

#: The environment variable that marks a local block's processes with their run directory.
RUN_DIR_VARIABLE = "OUTPOST_RUN_DIR"


def marked_processes(run_dir: Path) -> dict[int, int]:
    """``{pid: process group id}`` of the live processes marked with ``run_dir``."""
    mark = f"{RUN_DIR_VARIABLE}={Path(run_dir).absolute()}".encode()
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile, or another user's
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):
            continue
        if mark in environ.split(b"\0"):
            found[int(entry.name)] = int(fields[2])
    return found


def end_marked(run_dir: Path, grace: float) -> list[int]:
    """SIGTERM every process group holding a process marked with ``run_dir``, SIGKILL what is
    left after ``grace`` seconds; returns the group ids."""
    groups = sorted(set(marked_processes(run_dir).values()))
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while marked_processes(run_dir) and time.monotonic() < deadline:
        time.sleep(0.1)  # processes of another session: no child to wait() on
    for pid, group in marked_processes(run_dir).items():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)
    return groups
