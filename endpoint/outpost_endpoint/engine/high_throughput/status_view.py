"""Reading and printing the engine's ``<run dir>/status.json`` for ``outpost-endpoint status``.

The engine rewrites the file at every scaling step (see ``HighThroughputEngine._write_status``),
so a tool on the login node sees blocks, managers and queues without talking to the daemon.  A
file older than a few scaling periods means the daemon is stopped or stuck; the view says how old
it is instead of presenting stale numbers as current.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

#: the file the engine writes in its run directory
STATUS_FILE = "status.json"


def read(run_dir: Path) -> dict[str, Any] | None:
    """The last engine status written under ``run_dir``, or None if there is none (yet)."""
    try:
        data = json.loads((run_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def render(status: dict[str, Any], now: float | None = None) -> list[str]:
    """Human-readable lines: a summary, then blocks, managers and queued tasks per shape."""
    age = (time.time() if now is None else now) - float(status.get("at", 0))
    lines = [
        f"engine ({status.get('type', '?')}, written {age:.0f} s ago): "
        f"{status.get('workers', 0)} workers, {status.get('running', 0)} busy, "
        f"{status.get('idle', 0)} idle, {status.get('queued', 0)} queued, "
        f"{status.get('outstanding', 0)} outstanding"
    ]
    failing = status.get("provider_error")
    if isinstance(failing, dict) and failing.get("message"):
        since = time.strftime("%H:%M:%S", time.localtime(float(failing.get("since", 0))))
        lines.append(
            f"  blocks failing: {failing['message']} ({failing.get('attempts', 1)} refused "
            f"submission(s) since {since}; next try in {failing.get('retry_in', 0):.0f} s)"
        )
    blocks = status.get("blocks") or []
    lines.append(f"  blocks ({len(blocks)}):")
    lines += [
        f"    {b['block_id']:<10} job {b.get('job_id') or '-':<12} {b.get('state', '?'):<10}"
        + (f" {b['message']}" if b.get("message") else "")
        for b in blocks
    ] or ["    none"]
    managers = status.get("managers") or []
    lines.append(f"  managers ({len(managers)}):")
    lines += [
        f"    {m['hostname']:<16} {m['block_id']:<10} workers {m['workers']} "
        f"busy {m['busy']} idle {m['idle']} accelerators "
        f"{','.join(m.get('accelerators') or []) or '-'} walltime left "
        f"{m.get('walltime_left', 0):.0f} s" + (" (draining)" if m.get("draining") else "")
        for m in managers
    ] or ["    none"]
    queued = status.get("queued_by_shape") or {}
    lines.append("  queued by shape: " + (
        ", ".join(f"{shape} {count}" for shape, count in sorted(queued.items())) or "none"
    ))  # fmt: skip
    return lines
