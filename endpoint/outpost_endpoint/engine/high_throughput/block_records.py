"""``<run dir>/blocks.json``: the blocks a run submitted, kept on disk so the next run can end
them.

A daemon killed with ``-9`` (or by the OOM killer, or a rebooted VM) cannot cancel its blocks:
local managers and workers live in their own session and survive it; a PBS or Slurm job keeps
its nodes until its walltime.  The engine therefore records each block's job id as soon as the
provider returns it (and forgets it once the block ended), and the next start of the same
endpoint cancels whatever the previous run left -- reconnecting is impossible, since the
interchange's keys are new at every start.  ``qdel``/``scancel`` do it for batch jobs; the
local provider kills the block's process group (see
:meth:`~outpost_endpoint.providers.base.Provider.cancel_leftovers`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from outpost.runtime.files import write_json_private
from outpost_endpoint import pidfile
from outpost_endpoint.config import EngineConfig
from outpost_endpoint.errors import ProviderError
from outpost_endpoint.providers.base import Provider
from outpost_endpoint.providers.registry import provider_from_config

log = logging.getLogger(__name__)

#: The file, in the engine's run directory.
RECORDS_FILE = "blocks.json"
HOSTNAME = socket.gethostname()


class BlockRecords:
    """The live blocks of this run, rewritten atomically at every change (thread-safe)."""

    def __init__(self, run_dir: Path, provider: str) -> None:
        self.path = run_dir / RECORDS_FILE
        self.provider = provider
        self._lock = threading.Lock()
        self._blocks: dict[str, dict[str, Any]] = {}

    def submitting(self, block_id: str, job_name: str | None) -> None:
        """Before ``qsub``/``sbatch``: a daemon killed before the job id is written still
        leaves the job's (unique) name, by which the next start finds the job."""
        with self._lock:
            self._blocks[block_id] = {
                "block_id": block_id,
                "job_name": job_name,
                "job_id": None,
                "submitted_at": time.time(),
            }
            self._write()

    def added(self, block_id: str, job_id: str) -> None:
        with self._lock:
            entry = self._blocks.setdefault(
                block_id, {"block_id": block_id, "job_name": None, "submitted_at": time.time()}
            )
            entry["job_id"] = job_id
            self._write()

    def abandoned(self, block_id: str) -> None:
        """The scheduler refused the submission: there is no job."""
        with self._lock:
            if self._blocks.pop(block_id, None) is not None:
                self._write()

    def ended(self, job_id: str) -> None:
        with self._lock:
            ids = [b for b, entry in self._blocks.items() if entry.get("job_id") == job_id]
            for block_id in ids:
                del self._blocks[block_id]
            if ids:
                self._write()

    def _write(self) -> None:
        blocks = list(self._blocks.values())
        data = {
            "provider": self.provider,
            "pid": os.getpid(),
            "hostname": HOSTNAME,
            "blocks": blocks,
        }
        write_json_private(self.path, data, indent=1)  # durable: it is for surviving a crash


def read_leftovers(run_dir: Path) -> tuple[str | None, list[dict[str, Any]]]:
    """The provider and blocks a previous run recorded; ``(None, [])`` if none or unreadable."""
    try:
        data = json.loads((run_dir / RECORDS_FILE).read_text())
    except FileNotFoundError:
        return None, []
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", run_dir / RECORDS_FILE, exc)
        return None, []
    blocks = data.get("blocks") if isinstance(data, dict) else None
    if not isinstance(blocks, list):
        return None, []
    good = [
        b
        for b in blocks
        if isinstance(b, dict)
        and (isinstance(b.get("job_id"), str) or isinstance(b.get("job_name"), str))
    ]
    return str(data.get("provider")), good


def end_leftovers(run_dir: Path, provider: Provider) -> list[str]:
    """Cancel the blocks a previous run of this endpoint left behind; returns their job ids.

    Called by the engine before it submits anything, and by ``outpost-endpoint stop`` after
    the daemon is gone (it may have been killed before it released its blocks).  The local
    provider also ends unrecorded processes marked with the run directory.  A previous run
    with another provider type (the config changed) is named in the log but not touched: its
    jobs belong to another scheduler, which this provider cannot ask."""
    label, blocks = read_leftovers(run_dir)
    if blocks and not _ours_to_end(run_dir, label):
        return []
    job_ids = [str(b["job_id"]) for b in blocks if isinstance(b.get("job_id"), str)]
    if label == provider.label:  # killed while submitting: the job, if any, has that name
        for name in (b["job_name"] for b in blocks if not isinstance(b.get("job_id"), str)):
            job_ids += [j for j in provider.find_jobs(name) if j not in job_ids]
    if job_ids and label != provider.label:
        log.warning(
            "the previous run used provider %s and left blocks %s; this run uses %s and "
            "cannot end them: check them with that scheduler",
            label,
            ", ".join(job_ids),
            provider.label,
        )
        job_ids = []
    if job_ids:
        log.warning(
            "the previous run of this endpoint ended without releasing its blocks (killed?); "
            "ending %s job(s) %s",
            provider.label,
            ", ".join(job_ids),
        )
    try:
        provider.cancel_leftovers(job_ids)
    except ProviderError as exc:  # kept in the file: the next start tries again
        log.error("could not end the previous run's blocks %s: %s", ", ".join(job_ids), exc)
        return job_ids
    (run_dir / RECORDS_FILE).unlink(missing_ok=True)
    return job_ids


def _ours_to_end(run_dir: Path, label: str | None) -> bool:
    """Whether the recorded blocks may be ended by this process.

    Not while the run that recorded them is alive on this host: that is an instance being
    taken over (``start --force`` with a copied OUTPOST_HOME), which releases its blocks itself
    as it stops.  Not a local provider's blocks recorded on another host (a home shared by
    login nodes): their process ids name that host's processes, not ours."""
    try:
        data = json.loads((run_dir / RECORDS_FILE).read_text())
    except (OSError, ValueError):
        return True
    pid, host = data.get("pid"), data.get("hostname")
    if host is None or host == HOSTNAME:
        if isinstance(pid, int) and pid != os.getpid() and _is_endpoint_process(pid):
            log.info(
                "the blocks in %s belong to the run still alive as pid %d on this host; it "
                "ends them as it stops",
                run_dir / RECORDS_FILE,
                pid,
            )
            return False
        return True
    if label == "local":
        log.warning(
            "the local blocks in %s were started on host %s; end them there (`outpost-endpoint "
            "stop` on that host), this host cannot",
            run_dir / RECORDS_FILE,
            host,
        )
        return False
    return True


def _is_endpoint_process(pid: int) -> bool:
    """Whether ``pid`` is alive and an Outpost process (not a stranger that reused the pid)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return pidfile.is_alive(pid) and b"outpost" in command


def end_leftovers_of(engine: EngineConfig, run_dir: Path) -> list[str]:
    """:func:`end_leftovers` with the provider ``engine`` configures (for ``stop``)."""
    if engine.type != "high-throughput":
        return []
    provider = provider_from_config(engine.provider, run_dir)
    try:
        return end_leftovers(run_dir, provider)
    finally:
        provider.close()
