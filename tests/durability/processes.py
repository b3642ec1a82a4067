"""Finding and killing every process of an endpoint, as a crashed login node would lose them.

An endpoint is more than its daemon: the process-pool engine's workers are its children (same
process group), but the high-throughput engine's local blocks run in *new sessions*
(``start_new_session``, so a block can be killed as a group), with a manager and workers under
each.  ``killpg`` of the daemon's group therefore left the workers alive.  Here the tree is read
from ``/proc``: the daemon's descendants (by parent pid) plus every process in the sessions
those descendants lead.  All are frozen with SIGSTOP first -- so none can fork, exit or be
re-parented to init while the set is read again -- then killed with SIGKILL together.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def _stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, ppid, session id)`` of ``pid``, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[-1].split()
    return fields[0], int(fields[1]), int(fields[3])


def _all() -> dict[int, tuple[str, int, int]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                found[int(entry.name)] = stat
    return found


def process_tree(root: int) -> set[int]:
    """``root``, its descendants, and every process in a session one of them leads."""
    table = _all()
    tree = {root} if root in table else set()
    grew = True
    while grew:
        grew = False
        sessions = set(tree)  # a session id is the pid of its leader
        for pid, (_state, ppid, sid) in table.items():
            if pid not in tree and (ppid in tree or sid in sessions):
                tree.add(pid)
                grew = True
    return tree


def kill_tree(root: int) -> dict[int, int]:
    """SIGSTOP the whole tree of ``root`` until it stops growing, then SIGKILL all of it;
    returns the pids killed and their session ids (the caller waits for them to be gone)."""
    stopped: dict[int, int] = {}
    while True:
        new = process_tree(root) - stopped.keys()
        if not new:
            break
        for pid in new:
            stat = _stat(pid)
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            stopped[pid] = stat[2] if stat else -1
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return stopped
