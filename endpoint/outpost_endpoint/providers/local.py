"""The local provider: a block is a process group on this machine.

``submit`` runs ``worker_init`` and then the launcher-wrapped command with ``/bin/bash`` in a
new session (so the block
is one process group, as a batch job is one allocation), with its output in
``<run_dir>/blocks/<block_id>.log``; ``status`` asks the process (and, like a scheduler, ends a
block that outlived its walltime); ``cancel`` kills the group (SIGTERM, then SIGKILL after
``kill_grace`` seconds) -- every manager and worker with it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from outpost_endpoint.errors import ProviderError
from outpost_endpoint.providers.base import BlockState, BlockStatus, Provider
from outpost_endpoint.providers.local_processes import RUN_DIR_VARIABLE, end_marked

log = logging.getLogger(__name__)


class LocalProvider(Provider):
    label = "local"

    def __init__(
        self,
        *,
        run_dir: str | Path,
        worker_init: str = "",
        nodes_per_block: int = 1,
        min_blocks: int = 0,
        max_blocks: int = 1,
        walltime_seconds: float = 600.0,
        kill_grace: float = 5.0,
    ) -> None:
        super().__init__(
            nodes_per_block=nodes_per_block,
            min_blocks=min_blocks,
            max_blocks=max_blocks,
            walltime_seconds=walltime_seconds,
        )
        self.run_dir = Path(run_dir).absolute()
        self.worker_init = worker_init or ""
        self.kill_grace = kill_grace
        self._lock = threading.Lock()
        self._jobs: dict[str, subprocess.Popen[bytes]] = {}
        self._cancelled: set[str] = set()
        self._started: dict[str, float] = {}
        self._expired: set[str] = set()

    def submit(self, command: str, block_id: str) -> str:
        logs = self.run_dir / "blocks"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{block_id}.log"
        try:
            with open(log_path, "ab") as log_file:
                process = subprocess.Popen(
                    ["/bin/bash", "-c", f"{self.worker_init}\n{command}"],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env={
                        **os.environ,
                        "OUTPOST_BLOCK_ID": block_id,
                        RUN_DIR_VARIABLE: str(self.run_dir),  # see local_processes
                    },
                )
        except OSError as exc:
            raise ProviderError(f"could not start local block {block_id}: {exc}") from exc
        job_id = str(process.pid)
        with self._lock:
            self._jobs[job_id] = process
            self._started[job_id] = time.monotonic()
        return job_id

    def status(self, job_ids: Sequence[str]) -> dict[str, BlockStatus]:
        self._end_expired(job_ids)
        answer: dict[str, BlockStatus] = {}
        with self._lock:
            for job_id in job_ids:
                process = self._jobs.get(job_id)
                if process is None:
                    answer[job_id] = BlockStatus(BlockState.LOST, message="not started here")
                    continue
                code = process.poll()
                if code is None:
                    answer[job_id] = BlockStatus(BlockState.RUNNING, nodes=(os.uname().nodename,))
                elif job_id in self._expired:
                    answer[job_id] = BlockStatus(
                        BlockState.FAILED,
                        exit_code=code,
                        message=f"killed at its walltime of {self.walltime_seconds:g} s",
                    )
                elif job_id in self._cancelled:
                    answer[job_id] = BlockStatus(BlockState.CANCELLED, exit_code=code)
                elif code == 0:
                    answer[job_id] = BlockStatus(BlockState.COMPLETED, exit_code=0)
                else:
                    answer[job_id] = BlockStatus(
                        BlockState.FAILED, exit_code=code, message=f"exit status {code}"
                    )
        return answer

    def _end_expired(self, job_ids: Sequence[str]) -> None:
        """Like a batch scheduler, end a block at its walltime (the engine then replaces it)."""
        now = time.monotonic()
        with self._lock:
            expired = [
                j
                for j in job_ids
                if j in self._jobs
                and self._jobs[j].poll() is None
                and now - self._started[j] > self.walltime_seconds
            ]
        if expired:
            self.cancel(expired)
            with self._lock:
                self._expired.update(expired)

    def cancel(self, job_ids: Sequence[str]) -> None:
        with self._lock:
            processes = [(j, self._jobs[j]) for j in job_ids if j in self._jobs]
            self._cancelled.update(j for j, _ in processes)
        for _, process in processes:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + self.kill_grace
        for _, process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(deadline - time.monotonic(), 0))
            _signal_group(process, signal.SIGKILL)  # stragglers of the group, if any
            process.wait()

    def close(self) -> None:
        with self._lock:
            running = [j for j, p in self._jobs.items() if p.poll() is None]
        self.cancel(running)
        # Processes that left their block's group (a task's own setsid) carry the mark too.
        end_marked(self.run_dir, self.kill_grace)

    def cancel_leftovers(self, job_ids: Sequence[str]) -> None:
        """A previous run's blocks are process groups of this run directory: end every group
        holding a process marked with it (see local_processes), not just the recorded ids,
        which a crash between starting a block and recording it would miss."""
        groups = end_marked(self.run_dir, self.kill_grace)
        if groups:
            log.warning(
                "local: ended process group(s) %s of the previous run (recorded blocks: %s)",
                ", ".join(map(str, groups)),
                ", ".join(job_ids) or "none",
            )


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
