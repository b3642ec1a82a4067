"""The interchange: queues tasks per resource shape and feeds them to managers over CurveZMQ.

It runs as a thread of the endpoint (login node) and owns one ROUTER socket; the engine's other
threads talk to it through methods that take the lock, change the books and wake the thread
through a pipe (ZMQ sockets are not thread-safe, so only this thread touches the socket); a
burst of submits writes to the pipe once.  The tasks a manager gets in one turn of the loop go
out as one TASK message, their payloads as zero-copy frames (:mod:`.wire`).

Books: every task is in exactly one place -- queued under its shape (``python`` or ``mpi:N``), or
assigned to one manager -- so a lost manager's tasks are known exactly.  Dispatch sends a
manager at most ``workers + prefetch_capacity`` tasks, never a task whose walltime exceeds the
manager's remaining walltime, and places MPI tasks on whole nodes with :mod:`.packing`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import zmq

from outpost.protocol import ResultEnvelope, TaskEnvelope
from outpost_endpoint.engine.base import first_cancel
from outpost_endpoint.engine.high_throughput import (
    HEARTBEAT_PERIOD,
    outcomes,
    packing,
    security,
    wire,
)
from outpost_endpoint.results import cancelled_result

log = logging.getLogger(__name__)


@dataclass
class TaskRecord:
    task: TaskEnvelope
    future: Future[ResultEnvelope]
    received: float
    walltime: float | None
    nodes: int  # whole nodes for an MPI task, 0 for a plain task
    retries_left: int
    manager_id: str | None = None
    held_nodes: list[str] = field(default_factory=list)  # manager ids (MPI)
    attempts: int = 0
    cancel_requested: bool = False

    @property
    def shape(self) -> str:
        return f"mpi:{self.nodes}" if self.nodes else "python"


@dataclass
class ManagerRecord:
    manager_id: str
    hostname: str
    block_id: str
    workers: int
    expires_at: float
    accelerators: list[str]
    last_heard: float
    tasks: set[str] = field(default_factory=set)
    idle_since: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Scheduling:
    """How the interchange hands out tasks and watches its managers (the engine's config)."""

    #: Tasks a manager may hold beyond one per worker.
    prefetch_capacity: int = 0
    #: Seconds between the interchange's heartbeats to each manager.
    heartbeat_period: float = HEARTBEAT_PERIOD
    #: Seconds of silence after which a manager is lost (its tasks fail or go back).
    heartbeat_threshold: float = 30.0
    #: Seconds before its block ends in which a manager gets only tasks whose walltime fits.
    drain_period: float = 0.0


class Interchange:
    def __init__(
        self,
        keys: security.CurveKeys,
        scheduling: Scheduling = Scheduling(),
        *,
        bind_host: str = "127.0.0.1",
    ) -> None:
        self.keys = keys
        self.scheduling = scheduling
        self.lock = threading.RLock()
        self.tasks: dict[str, TaskRecord] = {}
        self.queues: dict[str, collections.deque[str]] = collections.defaultdict(collections.deque)
        self.managers: dict[str, ManagerRecord] = {}
        self.mpi_busy: dict[str, str] = {}  # manager id (node) -> MPI task id holding it
        self.blocks_seen: set[str] = set()  # blocks from which a manager ever registered
        self.on_manager_lost: Callable[[ManagerRecord, str], None] | None = None
        self.on_manager_registered: Callable[[ManagerRecord], None] | None = None
        self._outbox: list[list[bytes]] = []
        self._batches: dict[str, list[bytes]] = {}  # TASK frames per manager, this turn
        self._resolved: list[tuple[Future[ResultEnvelope], ResultEnvelope | None]] = []
        self._wake_r, self._wake_w = os.pipe()
        self._woken = False  # a wake-up is in the pipe and not yet read
        self._stopping = False
        self._context: zmq.Context[Any] = zmq.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._auth = security.secure_server(self._context, self._socket, keys)
        port = self._socket.bind_to_random_port(f"tcp://{bind_host}")
        self.port = port
        self._thread = threading.Thread(target=self._loop, name="outpost-interchange", daemon=True)

    # ----------------------------------------------------------------- engine side
    def start(self) -> None:
        self._thread.start()

    def add(self, record: TaskRecord) -> None:
        """Queue a task; raises KeyError if a task with its id is already in the books."""
        with self.lock:
            if record.task.task_id in self.tasks:
                raise KeyError(record.task.task_id)
            self.tasks[record.task.task_id] = record
            self.queues[record.shape].append(record.task.task_id)
        self._wake()

    def cancel(self, task_id: str) -> bool:
        with self.lock:
            record = first_cancel(self.tasks, task_id)
            if record is None:
                return False
            if record.manager_id is None:
                self.queues[record.shape].remove(task_id)
                self._finish(record, cancelled_result(record.task, {"received": record.received}))
            else:
                self._outbox.append([record.manager_id.encode(), wire.CANCEL, task_id.encode()])
        self._flush_resolved()
        self._wake()
        return True

    def lose_block(self, block_id: str, why: str) -> None:
        """The block's job ended: its managers and their tasks are lost now."""
        with self.lock:
            for manager in [m for m in self.managers.values() if m.block_id == block_id]:
                self._lose_manager(manager, why)
        self._flush_resolved()
        self._wake()

    def fail_queued(self, failure: Callable[[TaskRecord], ResultEnvelope]) -> int:
        """Fail every task still waiting for a manager (blocks cannot start); returns how many."""
        with self.lock:
            waiting = [self.tasks[tid] for q in self.queues.values() for tid in q]
            self.queues.clear()
            for record in waiting:
                self._finish(record, failure(record))
        self._flush_resolved()
        return len(waiting)

    def drain(self) -> list[TaskRecord]:
        """Take every queued (not yet sent) task out of the books, for shutdown."""
        with self.lock:
            taken = [self.tasks.pop(tid) for q in self.queues.values() for tid in q]
            self.queues.clear()
            return taken

    def abandon_all(self) -> list[TaskRecord]:
        with self.lock:
            taken = list(self.tasks.values())
            self.tasks.clear()
            self.queues.clear()
            for manager in self.managers.values():
                manager.tasks.clear()
            return taken

    def stop(self) -> None:
        with self.lock:
            if self._stopping:
                return
            self._stopping = True
            for manager_id in self.managers:
                self._outbox.append([manager_id.encode(), wire.STOP])
        self._wake()
        if self._thread.is_alive():
            self._thread.join(10)
        else:
            self._socket.close(linger=0)
        self._auth.stop()
        self._context.term()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            now = time.time()
            return {
                "managers": [
                    {
                        "manager_id": m.manager_id,
                        "hostname": m.hostname,
                        "block_id": m.block_id,
                        "workers": m.workers,
                        "busy": min(len(m.tasks), m.workers),
                        "idle": max(m.workers - len(m.tasks), 0),
                        "accelerators": m.accelerators,
                        "walltime_left": round(max(m.expires_at - now, 0), 1),
                        "draining": self.draining(m, now),
                    }
                    for m in self.managers.values()
                ],
                "queued": {shape: len(q) for shape, q in self.queues.items() if q},
                "outstanding": len(self.tasks),
            }

    # ----------------------------------------------------------------- thread
    def _wake(self) -> None:
        # Callers change the books before waking, and the loop clears the flag before it
        # looks at them: a change either finds the flag clear and writes, or is seen.
        if self._woken:
            return
        self._woken = True
        with contextlib.suppress(OSError):  # closed at stop: nothing left to wake
            os.write(self._wake_w, b"x")

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        next_beat = time.monotonic()
        while True:
            events = dict(poller.poll(int(max(next_beat - time.monotonic(), 0) * 1000) + 1))
            if self._wake_r in events:
                os.read(self._wake_r, 65536)
                self._woken = False
            if self._socket in events:
                while int(self._socket.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                    self._on_message(self._socket.recv_multipart())
            with self.lock:
                now = time.monotonic()
                try:
                    if now >= next_beat:
                        next_beat = now + self.scheduling.heartbeat_period
                        self._check_heartbeats(now)
                        for manager_id in self.managers:
                            self._outbox.append([manager_id.encode(), wire.HEARTBEAT])
                    if not self._stopping:
                        self._dispatch()
                except Exception:  # keep serving: a stopped interchange would hang every task
                    log.exception("interchange step failed")
                outbox, self._outbox = self._outbox, []
                stopping = self._stopping
            for frames in outbox:
                try:
                    self._socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                except zmq.ZMQError as exc:  # peer gone or its queue full
                    log.debug("cannot send to %r: %s", frames[0], exc)
                    if frames[1] == wire.TASK:
                        headers = frames[2 :: wire.TASK_FRAMES]
                        task_ids = [wire.loads(header)["task_id"] for header in headers]
                        self._unsent(frames[0].decode(), task_ids, exc)
            self._flush_resolved()
            if stopping:
                self._socket.close(linger=500)
                return

    def _unsent(self, manager_id: str, task_ids: list[str], error: zmq.ZMQError) -> None:
        """Tasks could not be handed to their manager: queue them again, in their order (not
        an attempt); a manager the socket no longer knows (it disconnected) is lost now."""
        with self.lock:
            for task_id in reversed(task_ids):
                record = self.tasks.get(task_id)
                if record is not None and record.manager_id == manager_id:
                    self._release(record)
                    record.attempts -= 1
                    self.queues[record.shape].appendleft(task_id)
            manager = self.managers.get(manager_id)
            if manager is not None and error.errno == zmq.EHOSTUNREACH:
                self._lose_manager(manager, "it disconnected from the interchange")

    def _on_message(self, frames: list[bytes]) -> None:
        try:
            self._handle(frames)
        except Exception:  # a garbled message must not stop the interchange
            log.exception("bad message from manager %r: %r", frames[:1], [f[:80] for f in frames])

    def _handle(self, frames: list[bytes]) -> None:
        if len(frames) < 2:
            return
        manager_id, kind = frames[0].decode(errors="replace"), frames[1]
        with self.lock:
            manager = self.managers.get(manager_id)
            if kind == wire.REGISTER:
                self._register(manager_id, wire.loads(frames[2]))
                return
            if manager is None:
                log.warning(
                    "message %r from unknown or lost manager %s; telling it to stop",
                    kind,
                    manager_id,
                )
                self._outbox.append([frames[0], wire.STOP])
                return
            manager.last_heard = time.monotonic()
            if kind == wire.RESULT:
                for i in range(2, len(frames) - wire.RESULT_FRAMES + 1, wire.RESULT_FRAMES):
                    record = self.tasks.get(frames[i].decode())
                    if record is not None and record.manager_id == manager_id:
                        self._finish(record, wire.result_from_frames(frames[i + 1], frames[i + 2]))
            elif kind == wire.LOST:
                record = self.tasks.get(frames[2].decode())
                if record is not None and record.manager_id == manager_id:
                    detail = wire.loads(frames[3])
                    self._retry_or_fail(
                        record,
                        lambda r: outcomes.worker_lost(
                            r.task, detail.get("hostname", manager.hostname),
                            detail.get("exitcode"), str(detail.get("worker", "")), r.attempts,
                        ),
                    )  # fmt: skip

    def _register(self, manager_id: str, info: dict[str, Any]) -> None:
        known = self.managers.get(manager_id)
        self.blocks_seen.add(str(info.get("block_id", "?")))
        self.managers[manager_id] = record = ManagerRecord(
            manager_id=manager_id,
            hostname=str(info.get("hostname", "?")),
            block_id=str(info.get("block_id", "?")),
            workers=int(info.get("workers", 1)),
            expires_at=float(info.get("expires_at", time.time() + 3600)),
            accelerators=list(info.get("accelerators", [])),
            last_heard=time.monotonic(),
        )
        if known is not None:  # registered again: its tasks stay on the books
            record.tasks = known.tasks
        if self.on_manager_registered is not None:
            self.on_manager_registered(record)
        log.info(
            "manager %s registered: host %s, block %s, %s workers, accelerators %s",
            manager_id, info.get("hostname"), info.get("block_id"), info.get("workers"),
            info.get("accelerators"),
        )  # fmt: skip

    def _check_heartbeats(self, now: float) -> None:
        for manager in list(self.managers.values()):
            silent = now - manager.last_heard
            if silent > self.scheduling.heartbeat_threshold:
                self._lose_manager(manager, f"no heartbeat for {silent:.0f} s")

    def _lose_manager(self, manager: ManagerRecord, why: str) -> None:
        log.warning("manager %s on %s lost: %s", manager.manager_id, manager.hostname, why)
        self.managers.pop(manager.manager_id, None)
        for task_id in list(manager.tasks):
            record = self.tasks.get(task_id)
            if record is None:
                continue
            if record.cancel_requested:
                self._finish(record, cancelled_result(record.task, {"received": record.received}))
            else:
                self._retry_or_fail(
                    record,
                    lambda r: outcomes.manager_lost(r.task, manager.hostname, why, r.attempts),
                )
        if self.on_manager_lost is not None:
            self.on_manager_lost(manager, why)

    def _release(self, record: TaskRecord) -> None:
        manager = self.managers.get(record.manager_id or "")
        if manager is not None:
            manager.tasks.discard(record.task.task_id)
            if not manager.tasks:
                manager.idle_since = time.monotonic()
        for node in record.held_nodes:
            self.mpi_busy.pop(node, None)
        record.held_nodes = []
        record.manager_id = None

    def _retry_or_fail(
        self, record: TaskRecord, failure: Callable[[TaskRecord], ResultEnvelope]
    ) -> None:
        self._release(record)
        if record.retries_left > 0:
            record.retries_left -= 1
            log.info("retrying task %s (%d retries left)", record.task.task_id, record.retries_left)
            self.queues[record.shape].appendleft(record.task.task_id)
        else:
            self._finish(record, failure(record))

    def _finish(self, record: TaskRecord, result: ResultEnvelope | None) -> None:
        self._release(record)
        self.tasks.pop(record.task.task_id, None)
        self._resolved.append((record.future, result))

    def _flush_resolved(self) -> None:
        with self.lock:
            resolved, self._resolved = self._resolved, []
        for future, result in resolved:
            if future.done():
                continue
            if result is None:
                future.cancel()
            else:
                future.set_result(result)

    # ----------------------------------------------------------------- dispatch
    def _dispatch(self) -> None:
        """Hand queued tasks to managers with room: one TASK message per manager."""
        try:
            self._dispatch_to_managers()
        finally:  # a task marked as sent must be in the outbox, even after an error
            for manager_id, frames in self._batches.items():
                self._outbox.append([manager_id.encode(), wire.TASK, *frames])
            self._batches.clear()

    def _dispatch_to_managers(self) -> None:
        now = time.time()
        self._dispatch_mpi(now)
        queue = self.queues.get("python")
        if not queue:
            return
        for manager in self.managers.values():
            room = manager.workers + self.scheduling.prefetch_capacity - len(manager.tasks)
            if room <= 0:
                continue
            left = manager.expires_at - now
            if left <= self.scheduling.drain_period:
                continue  # draining: no new task (checked here so the queue is not scanned)
            skipped: list[str] = []
            while room > 0 and queue:
                task_id = queue.popleft()
                record = self.tasks[task_id]
                if not self._fits(record, left):
                    skipped.append(task_id)  # walltime-aware: wait for a block with more time
                    continue
                self._send_task(manager, record, [])
                room -= 1
            queue.extendleft(reversed(skipped))
            if not queue:
                return

    def _dispatch_mpi(self, now: float) -> None:
        for shape, queue in self.queues.items():
            if not shape.startswith("mpi:") or not queue:
                continue
            for task_id in list(queue):
                record = self.tasks[task_id]
                blocks: dict[str, list[str]] = {}
                for m in self.managers.values():
                    if self._fits(record, m.expires_at - now):
                        blocks.setdefault(m.block_id, []).append(m.manager_id)
                placed = packing.place(record.nodes, blocks, set(self.mpi_busy))
                if placed is None:
                    continue
                head = self.managers[placed[1][0]]
                if len(head.tasks) >= head.workers + self.scheduling.prefetch_capacity:
                    continue
                queue.remove(task_id)
                for node in placed[1]:
                    self.mpi_busy[node] = task_id
                record.held_nodes = list(placed[1])
                self._send_task(head, record, [self.managers[n].hostname for n in placed[1]])

    def _fits(self, record: TaskRecord, left: float) -> bool:
        """Whether a manager with ``left`` seconds of walltime may start ``record``: not while
        it drains (``left`` within ``drain_period``: it finishes its work and starts nothing
        that could be cut off by the block's end), and only if the task's walltime fits."""
        if left <= self.scheduling.drain_period:
            return False
        return record.walltime is None or record.walltime <= left

    def draining(self, manager: ManagerRecord, now: float | None = None) -> bool:
        """Whether ``manager``'s block ends within ``drain_period``."""
        return (
            manager.expires_at - (time.time() if now is None else now)
            <= self.scheduling.drain_period
        )

    def _send_task(self, manager: ManagerRecord, record: TaskRecord, hosts: list[str]) -> None:
        record.manager_id = manager.manager_id
        record.attempts += 1
        manager.tasks.add(record.task.task_id)
        task = record.task
        header = wire.task_header(
            task, walltime=record.walltime, received=record.received, nodes=hosts
        )
        batch = self._batches.setdefault(manager.manager_id, [])
        batch += [header, task.function, task.args]


__all__ = ["Interchange", "ManagerRecord", "TaskRecord"]
