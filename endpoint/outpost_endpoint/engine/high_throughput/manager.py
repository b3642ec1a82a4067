"""The per-node manager: registers with the interchange, runs workers, reports every outcome.

Started once per node by the block's launcher as ``python -m
outpost_endpoint.engine.high_throughput.manager --address tcp://HOST:PORT --block-id B
--run-dir DIR``.  One thread, one poll loop over the ZMQ socket, each worker's pipe and each
worker's process sentinel, so a worker's death is seen the moment it happens.  The manager
enforces per-task walltimes and cancels (by killing the one worker and starting a fresh one),
reports a worker that died as ``LOST`` (the interchange decides retry or fail), and exits on its
own when the interchange has been silent for ``heartbeat_threshold`` seconds, so an endpoint
that vanished leaves no managers behind.

Workers are forked before the ZMQ context exists (see :mod:`.worker`); a task's payload frames
go from the socket to the worker's pipe as they arrived, and the results of one turn of the
loop go back to the interchange in one message, before any new task is handed out.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import os
import sys
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from outpost.protocol import ResultEnvelope, TaskEnvelope
from outpost_endpoint.engine.high_throughput import security, wire
from outpost_endpoint.engine.high_throughput.layout import WorkerSlot, plan_workers
from outpost_endpoint.engine.high_throughput.worker import (
    frame_socket,
    send_frames,
    worker_context,
    worker_main,
)
from outpost_endpoint.launchers.mpi_tasks import default_template
from outpost_endpoint.launchers.nodelist import this_node
from outpost_endpoint.results import cancelled_result, timeout_result

log = logging.getLogger("outpost_endpoint.manager")
MANAGER_CONFIG = "manager.json"
#: MPI tasks get the nodes the interchange packed them onto; used if flavour detection fails
#: (hydra and Cray PALS both read ``--hostfile``).  ``engine.mpi_launcher`` replaces it.
NODEFILE_MPI_LAUNCHER = (
    "mpiexec -n {num_ranks} -ppn {ranks_per_node} --hostfile {nodefile} {launcher_options}"
)
#: the extra environment of a plain (not MPI) task: no node file
_PLAIN_EXTRA = wire.dumps({"OUTPOST_MPI_NODEFILE": ""})


@dataclass
class _Queued:
    """A task received from the interchange: its header's fields and its frames as received."""

    fields: dict[str, Any]
    header: bytes
    function: Any  # zmq.Frame (or bytes): handed to the worker's pipe without a copy
    args: Any


@dataclass
class _Running:
    task: TaskEnvelope
    walltime: float | None
    deadline: float | None
    timing: dict[str, float]
    cancelled: bool = False


@dataclass
class _Worker:
    slot: WorkerSlot
    process: Any = None
    conn: Any = None
    running: _Running | None = None
    spawned: float = field(default_factory=time.monotonic)
    fd: int = -1  # of the pipe, for the poll loop
    sock: Any = None  # the pipe as a socket, for send_frames


class Manager:
    def __init__(self, address: str, block_id: str, run_dir: Path, config: dict[str, Any]):
        self.address = address
        self.block_id = block_id
        self.run_dir = run_dir
        self.config = config
        # the scheduler's name for this node (SLURMD_NODENAME, PBS short name): MPI node files
        # must name nodes srun/mpiexec know, and emulated Slurm nodes all have host name "vm"
        self.hostname = this_node()
        self.manager_id = f"{block_id}.{self.hostname}.{os.getpid()}.{uuid.uuid4().hex[:4]}"
        self.heartbeat_period = float(config.get("heartbeat_period", wire.HEARTBEAT_PERIOD))
        self.heartbeat_threshold = float(config.get("heartbeat_threshold", 30.0))
        self.started = time.time()
        self.expires_at = self.started + float(config.get("walltime_seconds") or 10 * 365 * 86400)
        self.context = worker_context()
        self.queue: collections.deque[_Queued] = collections.deque()
        cores = sorted(os.sched_getaffinity(0))
        self.slots = plan_workers(
            max_workers_per_node=config.get("max_workers_per_node"),
            accelerators=config.get("accelerators", []),
            cpu_affinity=config.get("cpu_affinity", "none"),
            cores=cores,
            accelerator_variable=config.get("accelerator_variable", "CUDA_VISIBLE_DEVICES"),
        )
        self.cores = cores
        self.workers = [_Worker(slot) for slot in self.slots]
        self.curve_keys = security.read_client_files(run_dir / "curve")
        self.nodefiles = run_dir / "nodefiles"
        self._template: str | None = None
        self._poller: zmq.Poller | None = None  # rebuilt when a worker is replaced
        self._results: list[Any] = []  # RESULT frames of this turn of the loop, sent together
        self.zmq: zmq.Context[Any]  # made by _open_socket, after the first workers were forked
        self.socket: zmq.Socket[Any]

    def _open_socket(self) -> zmq.Socket[Any]:
        """The DEALER socket to the interchange (made after the first workers were forked)."""
        self.zmq = zmq.Context()
        socket = self.zmq.socket(zmq.DEALER)
        socket.setsockopt(zmq.IDENTITY, self.manager_id.encode())
        socket.setsockopt(zmq.LINGER, 2000)
        # A send that cannot complete for this long means the interchange is gone: exit
        # rather than block forever (zmq.Again ends the loop).
        socket.setsockopt(zmq.SNDTIMEO, int(self.heartbeat_threshold * 1000))
        security.secure_client(socket, *self.curve_keys)
        socket.connect(self.address)
        return socket

    # ----------------------------------------------------------------- life
    def run(self) -> int:
        for worker in self.workers:
            self._spawn(worker)
        self.socket = self._open_socket()
        self._send(
            wire.REGISTER,
            wire.dumps(
                {
                    "manager_id": self.manager_id,
                    "hostname": self.hostname,
                    "block_id": self.block_id,
                    "workers": len(self.workers),
                    "cores": len(self.cores),
                    "accelerators": [
                        w.slot.accelerator for w in self.workers if w.slot.accelerator
                    ],
                    "expires_at": self.expires_at,
                    "pid": os.getpid(),
                }
            ),
        )
        last_heard = time.monotonic()
        next_beat = time.monotonic() + self.heartbeat_period
        try:
            while True:
                now = time.monotonic()
                if now - last_heard > self.heartbeat_threshold:
                    log.error("interchange silent for %.0f s; exiting", now - last_heard)
                    return 3
                if now >= next_beat:
                    self._send(wire.HEARTBEAT)
                    next_beat = now + self.heartbeat_period
                timeout = min(next_beat, self._next_deadline() or next_beat) - time.monotonic()
                if self._poller is None:
                    self._poller = self._make_poller()
                events = dict(self._poller.poll(int(max(timeout, 0) * 1000) + 1))
                if self.socket in events:
                    while int(self.socket.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                        frames = self.socket.recv_multipart(copy=False)
                        last_heard = time.monotonic()
                        if not self._on_message(frames):
                            return 0
                for worker in self.workers:
                    if worker.conn is None:
                        continue
                    if worker.fd in events:
                        self._on_answer(worker)
                    elif worker.process.sentinel in events:
                        self._on_worker(worker)
                self._check_deadlines()
                if self._results:  # before new work: results are what the interchange waits on
                    batch, self._results = [wire.RESULT, *self._results], []
                    self.socket.send_multipart(batch, copy=False)
                self._dispatch()
        except zmq.Again:
            log.error(
                "cannot send to the interchange for %.0f s; exiting", self.heartbeat_threshold
            )
            return 3
        finally:
            self._stop_workers()
            self.socket.close(linger=1000)
            self.zmq.term()

    def _make_poller(self) -> zmq.Poller:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        for worker in self.workers:
            if worker.conn is not None:
                poller.register(worker.conn.fileno(), zmq.POLLIN)
                poller.register(worker.process.sentinel, zmq.POLLIN)
        return poller

    def _send(self, *frames: bytes) -> None:
        self.socket.send_multipart(list(frames))

    def _answer(self, task_id: str, result: ResultEnvelope | tuple[bytes, bytes]) -> None:
        """Queue a result for the RESULT message sent at the end of this turn of the loop."""
        header, value = wire.result_frames(result) if isinstance(result, ResultEnvelope) else result
        self._results += [task_id.encode(), header, value]

    # ----------------------------------------------------------------- interchange
    def _on_message(self, frames: list[Any]) -> bool:
        kind = frames[0].bytes
        if kind == wire.TASK:
            for i in range(1, len(frames) - wire.TASK_FRAMES + 1, wire.TASK_FRAMES):
                header = frames[i].bytes
                queued = _Queued(wire.loads(header), header, frames[i + 1], frames[i + 2])
                self.queue.append(queued)
        elif kind == wire.CANCEL:
            self._cancel(frames[1].bytes.decode())
        elif kind == wire.STOP:
            log.info("interchange asked us to stop")
            return False
        return True

    def _cancel(self, task_id: str) -> None:
        for queued in self.queue:
            if queued.fields.get("task_id") == task_id:
                self.queue.remove(queued)
                self._answer(task_id, cancelled_result(_described(queued.fields)))
                return
        for worker in self.workers:
            if worker.running is not None and worker.running.task.task_id == task_id:
                worker.running.cancelled = True
                worker.process.kill()  # its sentinel fires; _on_worker answers "cancelled"

    # ----------------------------------------------------------------- workers
    def _spawn(self, worker: _Worker) -> None:
        parent, child = self.context.Pipe(duplex=True)
        process = self.context.Process(
            target=worker_main,
            args=(child, worker.slot.env, worker.slot.cores, self.config.get("payload_limit")),
            name=f"outpost-worker-{worker.slot.index}",
            daemon=True,
        )
        process.start()
        child.close()
        worker.process, worker.conn, worker.running = process, parent, None
        worker.fd, worker.sock = parent.fileno(), frame_socket(parent)
        self._poller = None

    def _reap(self, worker: _Worker) -> int | None:
        self._poller = None
        if worker.conn is not None:
            worker.conn.close()
            worker.sock.close()
        worker.conn = worker.sock = None
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join()
        return worker.process.exitcode

    def _on_answer(self, worker: _Worker) -> None:
        """The worker's pipe is readable: its result, or the end of the pipe if it died."""
        running = worker.running
        try:  # header and value are written back to back: the value is there or coming
            answer = worker.conn.recv_bytes(), worker.conn.recv_bytes()
        except (EOFError, OSError):  # it is gone or going: its pipe is closed
            self._on_worker(worker, closed=True)
            return
        if running is not None:
            worker.running = None
            self._answer(running.task.task_id, answer)

    def _on_worker(self, worker: _Worker, closed: bool = False) -> None:
        """The worker's process ended (or its pipe did): pass on a result it wrote before, else
        report its task lost (or cancelled) and start a new worker."""
        running = worker.running
        answer: tuple[bytes, bytes] | None = None
        if not closed and worker.conn is not None and worker.conn.poll():
            try:  # header and value are written back to back: the value is there or coming
                answer = worker.conn.recv_bytes(), worker.conn.recv_bytes()
            except (EOFError, OSError):
                answer = None
        if answer is not None and running is not None:
            worker.running = None
            self._answer(running.task.task_id, answer)
            return
        if answer is not None or (not closed and worker.process.is_alive()):
            return  # spurious wake-up
        exitcode = self._reap(worker)
        pid = str(worker.process.pid)
        if running is not None:
            running.timing["finished"] = time.time()
            task_id = running.task.task_id
            if running.cancelled:
                self._answer(task_id, cancelled_result(running.task, running.timing))
            else:
                detail = {"exitcode": exitcode, "worker": pid, "hostname": self.hostname}
                self._send(wire.LOST, task_id.encode(), wire.dumps(detail))
        log.warning(
            "worker %s (pid %s) died (exit %s); starting a new one",
            worker.slot.index,
            pid,
            exitcode,
        )
        self._spawn(worker)

    def _next_deadline(self) -> float | None:
        deadlines = [w.running.deadline for w in self.workers if w.running and w.running.deadline]
        return min(deadlines) if deadlines else None

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            running = worker.running
            if running is None or running.deadline is None or now < running.deadline:
                continue
            pid = str(worker.process.pid)
            self._reap(worker)
            running.timing["finished"] = time.time()
            assert running.walltime is not None
            result = timeout_result(running.task, running.walltime, running.timing, pid)
            self._answer(running.task.task_id, result)
            self._spawn(worker)

    def _dispatch(self) -> None:
        for worker in self.workers:
            if not self.queue:
                return
            if worker.running is not None or worker.conn is None:
                continue
            queued = self.queue.popleft()
            meta = queued.fields
            task = _described(meta)
            walltime = meta.get("walltime")
            started = time.time()
            worker.running = _Running(
                task,
                walltime,
                None if walltime is None else time.monotonic() + float(walltime),
                {"received": meta.get("received") or started, "started": started},
            )
            extra = _PLAIN_EXTRA
            if meta.get("nodes"):  # an MPI task: its node file and a launcher that reads it
                extra = wire.dumps(
                    {
                        "OUTPOST_MPI_NODEFILE": self._nodefile(task.task_id, meta["nodes"]),
                        "OUTPOST_MPI_LAUNCHER": (
                            self.config.get("mpi_launcher") or self._mpi_template()
                        ),
                    }
                )
            frames = (queued.header, extra, _buffer(queued.function), _buffer(queued.args))
            with contextlib.suppress(OSError):  # a death shows on the sentinel
                send_frames(worker.sock, frames)

    def _mpi_template(self) -> str:
        """The MPI flavour found on this node (hydra, PALS, srun), asked once."""
        if self._template is None:
            try:
                self._template = default_template()
            except Exception as exc:  # detection must not fail the task; hydra+PALS both work
                log.warning(
                    "MPI flavour detection failed (%s); using %s", exc, NODEFILE_MPI_LAUNCHER
                )
                self._template = NODEFILE_MPI_LAUNCHER
        return self._template

    def _nodefile(self, task_id: str, hosts: list[str]) -> str:
        if not hosts:
            return ""
        self.nodefiles.mkdir(parents=True, exist_ok=True)
        path = self.nodefiles / f"{task_id}.hosts"
        path.write_text("".join(f"{host}\n" for host in hosts))
        return str(path)

    def _stop_workers(self) -> None:
        for worker in self.workers:
            if worker.conn is not None and worker.running is None:
                with contextlib.suppress(OSError, ValueError):
                    worker.conn.send_bytes(b"")
        for worker in self.workers:
            if worker.process is not None:
                worker.process.join(2)
                if worker.process.is_alive():
                    worker.process.kill()
                    worker.process.join()


def _described(fields: dict[str, Any]) -> TaskEnvelope:
    """The task without its payloads (they stay in their frames): enough to describe a
    timeout or cancel."""
    return wire.task_from_header(fields, b"", b"")


def _buffer(frame: Any) -> Any:
    """The bytes of a received frame without copying them (``bytes`` pass through)."""
    return frame.buffer if isinstance(frame, zmq.Frame) else frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Outpost high-throughput manager (one per node)")
    parser.add_argument("--address", required=True, help="tcp://HOST:PORT of the interchange")
    parser.add_argument("--block-id", required=True)
    parser.add_argument("--run-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s [manager %(process)d] %(message)s",
    )
    config = json.loads((args.run_dir / MANAGER_CONFIG).read_text())
    # Python 3.12+ warns on fork() once ZMQ's I/O thread exists (a replaced worker): the child
    # only runs Python and its own pipe, never ZMQ, so the locks that thread may hold are
    # never needed there (see .worker).
    warnings.filterwarnings(
        "ignore", message=r".*fork\(\) may lead to deadlocks", category=DeprecationWarning
    )
    return Manager(args.address, args.block_id, args.run_dir, config).run()


if __name__ == "__main__":
    sys.exit(main())
