"""``ProcessPoolEngine``: a fixed number of worker processes on this host.

Why not :class:`concurrent.futures.ProcessPoolExecutor`: it cannot kill the one worker running a
task that exceeded its walltime (only the whole pool), and a single dead worker breaks the whole
pool, failing every queued task with it.  Here each worker process has its own *slot*: a thread
that hands it one task at a time over a pipe and waits on the pipe *and* the process sentinel
with the task's walltime as timeout.  So a timeout kills exactly one worker, a crash fails
exactly one task (reason ``worker_lost``, naming the signal), and the slot starts a fresh worker
and keeps serving.  Workers use the ``spawn`` context: the daemon has pika threads, and forking
a threaded process can deadlock the child.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from outpost.protocol import DEFAULT_PAYLOAD_LIMIT, ResultEnvelope, TaskEnvelope
from outpost_endpoint.engine.base import Engine, first_cancel
from outpost_endpoint.engine.worker import task_environment, worker_main
from outpost_endpoint.errors import EngineError
from outpost_endpoint.results import (
    cancelled_result,
    failed_result,
    timeout_result,
    worker_lost_result,
)

log = logging.getLogger(__name__)


@dataclass
class _Job:
    task: TaskEnvelope
    future: Future[ResultEnvelope]
    received: float
    walltime: float | None
    running: bool = False
    cancel_requested: bool = False
    slot: _Slot | None = None
    timing: dict[str, float] = field(default_factory=dict)


class ProcessPoolEngine(Engine):
    """Runs tasks in ``max_workers`` local processes; see the module docstring."""

    def __init__(self, max_workers: int, *, payload_limit: int | None = DEFAULT_PAYLOAD_LIMIT):
        if max_workers < 1:
            raise EngineError(f"max_workers must be at least 1, got {max_workers}")
        self.max_workers = max_workers
        self.payload_limit = payload_limit
        self._context = multiprocessing.get_context("spawn")
        self._cond = threading.Condition()
        self._queue: collections.deque[_Job] = collections.deque()
        self._jobs: dict[str, _Job] = {}
        self._slots: list[_Slot] = []
        self._closing = False
        self._abandon = False

    # ------------------------------------------------------------------ Engine API
    def start(self) -> None:
        with self._cond:
            if self._slots:
                return
            self._slots = [_Slot(self, i) for i in range(self.max_workers)]
        for slot in self._slots:
            slot.start()

    def submit(self, task: TaskEnvelope) -> Future[ResultEnvelope]:
        future: Future[ResultEnvelope] = Future()
        walltime, problem = _walltime_of(task)
        if problem:
            future.set_result(failed_result(task, "rejected", problem))
            return future
        with self._cond:
            if self._closing:
                raise EngineError("the engine is shutting down; it accepts no new tasks")
            if task.task_id in self._jobs:
                raise EngineError(f"task {task.task_id} is already in the engine")
            job = _Job(task, future, time.time(), walltime)
            self._jobs[task.task_id] = job
            self._queue.append(job)
            self._cond.notify()
        return future

    def cancel(self, task_id: str) -> bool:
        with self._cond:
            job = first_cancel(self._jobs, task_id)
            if job is None:
                return False
            if job.running and job.slot is not None:
                # Killing the worker is the only way to stop arbitrary Python code; the slot
                # sees the death, answers ``cancelled`` (not worker_lost) and starts a fresh
                # worker.  Done under the lock, so the slot cannot have moved on to another task.
                job.slot.kill()
                return True
            self._queue.remove(job)
            del self._jobs[task_id]
        job.future.set_result(cancelled_result(job.task, {"received": job.received}))
        return True

    def status(self) -> dict[str, Any]:
        with self._cond:
            busy = sum(1 for job in self._jobs.values() if job.running)
            return {
                "type": "process-pool",
                "workers": sum(1 for slot in self._slots if slot.alive),
                "max_workers": self.max_workers,
                "idle": max(len(self._slots) - busy, 0),
                "running": busy,
                "queued": len(self._queue),
                "outstanding": len(self._jobs),
            }

    def outstanding(self) -> list[str]:
        """Task ids queued or running, for diagnostics."""
        with self._cond:
            return list(self._jobs)

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        with self._cond:
            self._closing = True
            abandoned = list(self._queue)
            self._queue.clear()
            for job in abandoned:
                del self._jobs[job.task.task_id]
            self._cond.notify_all()
        for job in abandoned:
            job.future.cancel()
        deadline = None if timeout is None else time.monotonic() + timeout
        if wait:
            for slot in self._slots:
                slot.join(None if deadline is None else max(deadline - time.monotonic(), 0))
        with self._cond:
            self._abandon = True
        for slot in self._slots:
            slot.stop_worker()
        for slot in self._slots:
            slot.join(10)

    # ------------------------------------------------------------------ for slots
    def _next_job(self, slot: _Slot) -> _Job | None:
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if not self._queue:
                return None
            job = self._queue.popleft()
            job.running = True
            job.slot = slot
            slot.busy = True
            return job

    def _finish(self, job: _Job, result: ResultEnvelope | None) -> None:
        with self._cond:
            self._jobs.pop(job.task.task_id, None)
        if result is None:
            job.future.cancel()
        else:
            job.future.set_result(result)


class _Slot:
    """One worker process and the thread that feeds it."""

    def __init__(self, engine: ProcessPoolEngine, index: int) -> None:
        self.engine = engine
        self.index = index
        self._lock = threading.Lock()
        self._process: Any = None
        self._conn: Connection | None = None
        self.busy = False
        self._thread = threading.Thread(
            target=self._loop, name=f"outpost-slot-{index}", daemon=True
        )

    @property
    def alive(self) -> bool:
        process = self._process
        return process is not None and process.is_alive()

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def join(self, timeout: float | None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def kill(self) -> None:
        with self._lock:
            if self._process is not None and self._process.is_alive():
                self._process.kill()

    def stop_worker(self) -> None:
        """Ask an idle worker to exit; kill a busy one (its task is abandoned)."""
        with self._lock:
            process, conn = self._process, self._conn
        if process is None or conn is None:
            return
        if not self.busy:
            with contextlib.suppress(OSError, ValueError):
                conn.send(None)
            process.join(2)
        if process.is_alive():
            process.kill()
            process.join()

    def _spawn(self) -> None:
        parent, child = self.engine._context.Pipe(duplex=True)
        process = self.engine._context.Process(
            target=worker_main,
            args=(child, self.engine.payload_limit),
            name=f"outpost-worker-{self.index}",
            daemon=True,
        )
        process.start()
        child.close()
        with self._lock:
            self._process, self._conn = process, parent
        log.debug("worker %d started (pid %s)", self.index, process.pid)

    def _reap(self) -> int | None:
        with self._lock:
            process, conn = self._process, self._conn
            self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is None:
            return None
        if process.is_alive():
            process.kill()
        process.join()
        return process.exitcode

    def _loop(self) -> None:
        while True:
            job = self.engine._next_job(self)
            if job is None:
                return
            try:
                result = self._run(job)
            except Exception as exc:  # a bug here must not hang the task
                log.exception("slot %d failed running task %s", self.index, job.task.task_id)
                result = failed_result(job.task, "worker_lost", f"engine error: {exc!r}")
            self.busy = False
            self.engine._finish(job, result)
            if job.cancel_requested:
                self._reap()  # the cancel may have killed the worker just after it answered
            if self._process is None and not self.engine._closing:
                self._spawn()

    def _run(self, job: _Job) -> ResultEnvelope | None:
        if not self.alive:
            self._reap()
            self._spawn()
        process, conn = self._process, self._conn
        assert process is not None and conn is not None
        worker = str(process.pid)
        started = time.time()
        job.timing = {"received": job.received, "started": started}
        with contextlib.suppress(OSError, ValueError):  # if the worker died, the sentinel says how
            conn.send((job.task.to_bytes(), job.received, task_environment(job.task)))
        deadline = None if job.walltime is None else time.monotonic() + job.walltime
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
            ready = wait([conn, process.sentinel], remaining)
            if conn in ready:
                try:
                    return ResultEnvelope.from_bytes(conn.recv_bytes())
                except (EOFError, OSError):
                    pass  # died mid-answer: handled as a lost worker below
            elif not ready:
                self._reap()
                job.timing["finished"] = time.time()
                assert job.walltime is not None
                return timeout_result(job.task, job.walltime, job.timing, worker)
            exitcode = self._reap()
            job.timing["finished"] = time.time()
            if job.cancel_requested:
                return cancelled_result(job.task, job.timing)
            if self.engine._abandon:
                return None
            log.warning("worker %s died running task %s", worker, job.task.task_id)
            return worker_lost_result(job.task, exitcode, job.timing, worker)


def _walltime_of(task: TaskEnvelope) -> tuple[float | None, str]:
    value = task.resource_specification.get("walltime")
    if value is None:
        return None, ""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None, (
            f"resource_specification['walltime'] must be a positive number of seconds, got "
            f"{value!r}"
        )
    return float(value), ""
