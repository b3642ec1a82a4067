"""The per-node manager: registers with the interchange, runs workers, reports every outcome.

Started once per node by the block's launcher as ``python -m
outpost_endpoint.engine.high_throughput.manager --address tcp://HOST:PORT --block-id B
--run-dir DIR``.  One thread, one poll loop over the ZMQ socket, each worker's pipe and each
worker's process sentinel, so a worker's death is seen the moment it happens.  The manager
enforces per-task walltimes and cancels (by killing the one worker and starting a fresh one),
reports a worker that died as ``LOST`` (the interchange decides retry or fail), and exits on its
own when the interchange has been silent for ``heartbeat_threshold`` seconds, so an endpoint
that vanished leaves no managers behind.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import multiprocessing
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from outpost.protocol import TaskEnvelope
from outpost_endpoint.engine.high_throughput import security, wire
from outpost_endpoint.engine.high_throughput.layout import WorkerSlot, plan_workers
from outpost_endpoint.engine.high_throughput.worker import worker_main
from outpost_endpoint.engine.worker import task_environment
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
        self.heartbeat_period = float(config.get("heartbeat_period", 2.0))
        self.heartbeat_threshold = float(config.get("heartbeat_threshold", 30.0))
        self.started = time.time()
        self.expires_at = self.started + float(config.get("walltime_seconds") or 10 * 365 * 86400)
        self.context = multiprocessing.get_context("spawn")
        self.queue: collections.deque[tuple[dict[str, Any], bytes]] = collections.deque()
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
        self.zmq = zmq.Context()
        self.socket = self.zmq.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.IDENTITY, self.manager_id.encode())
        self.socket.setsockopt(zmq.LINGER, 2000)
        # A send that cannot complete for this long means the interchange is gone: exit
        # rather than block forever (zmq.Again ends the loop).
        self.socket.setsockopt(zmq.SNDTIMEO, int(self.heartbeat_threshold * 1000))
        server_public, public, secret = security.read_client_files(run_dir / "curve")
        security.secure_client(self.socket, server_public, public, secret)
        self.nodefiles = run_dir / "nodefiles"
        self._template: str | None = None
        self._poller: zmq.Poller | None = None  # rebuilt when a worker is replaced

    # ----------------------------------------------------------------- life
    def run(self) -> int:
        for worker in self.workers:
            self._spawn(worker)
        self.socket.connect(self.address)
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
                        frames = self.socket.recv_multipart()
                        last_heard = time.monotonic()
                        if not self._on_message(frames):
                            return 0
                for worker in self.workers:
                    if worker.conn is not None and (
                        worker.conn.fileno() in events or worker.process.sentinel in events
                    ):
                        self._on_worker(worker)
                self._check_deadlines()
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

    # ----------------------------------------------------------------- interchange
    def _on_message(self, frames: list[bytes]) -> bool:
        kind = frames[0]
        if kind == wire.TASK:
            self.queue.append((wire.loads(frames[1]), frames[2]))
        elif kind == wire.CANCEL:
            self._cancel(frames[1].decode())
        elif kind == wire.STOP:
            log.info("interchange asked us to stop")
            return False
        return True

    def _cancel(self, task_id: str) -> None:
        for meta, body in list(self.queue):
            if meta.get("task_id") == task_id:
                task = _header(meta, body)
                self.queue.remove((meta, body))
                self._send(wire.RESULT, task_id.encode(), cancelled_result(task).to_bytes())
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
        self._poller = None

    def _reap(self, worker: _Worker) -> int | None:
        self._poller = None
        if worker.conn is not None:
            worker.conn.close()
        worker.conn = None
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join()
        return worker.process.exitcode

    def _on_worker(self, worker: _Worker) -> None:
        running = worker.running
        answer: bytes | None = None
        if worker.conn is not None and worker.conn.poll():
            try:
                answer = worker.conn.recv_bytes()
            except (EOFError, OSError):
                answer = None
        if answer is not None and running is not None:
            worker.running = None
            self._send(wire.RESULT, running.task.task_id.encode(), answer)
            return
        if answer is not None or worker.process.is_alive():
            return  # spurious wake-up
        exitcode = self._reap(worker)
        pid = str(worker.process.pid)
        if running is not None:
            running.timing["finished"] = time.time()
            task_id = running.task.task_id.encode()
            if running.cancelled:
                self._send(
                    wire.RESULT, task_id, cancelled_result(running.task, running.timing).to_bytes()
                )
            else:
                detail = {"exitcode": exitcode, "worker": pid, "hostname": self.hostname}
                self._send(wire.LOST, task_id, wire.dumps(detail))
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
            self._send(wire.RESULT, running.task.task_id.encode(), result.to_bytes())
            self._spawn(worker)

    def _dispatch(self) -> None:
        for worker in self.workers:
            if not self.queue:
                return
            if worker.running is not None or worker.conn is None:
                continue
            meta, body = self.queue.popleft()
            task = _header(meta, body)
            walltime = meta.get("walltime")
            started = time.time()
            worker.running = _Running(
                task,
                walltime,
                None if walltime is None else time.monotonic() + float(walltime),
                {"received": meta.get("received", started), "started": started},
            )
            extra = task_environment(task)
            extra["OUTPOST_MPI_NODEFILE"] = self._nodefile(task.task_id, meta.get("nodes") or [])
            if meta.get("nodes"):  # an MPI task: a launcher that reads its node file
                extra["OUTPOST_MPI_LAUNCHER"] = (
                    self.config.get("mpi_launcher") or self._mpi_template()
                )
            with contextlib.suppress(OSError, ValueError):  # a death shows on the sentinel
                worker.conn.send((body, meta.get("received", started), extra))

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
                    worker.conn.send(None)
        for worker in self.workers:
            if worker.process is not None:
                worker.process.join(2)
                if worker.process.is_alive():
                    worker.process.kill()
                    worker.process.join()


def _header(meta: dict[str, Any], body: bytes) -> TaskEnvelope:
    """The task without its payloads, from the metadata the interchange sends along: enough
    to describe a timeout or cancel, and no base64 decoding of the function per task here."""
    if "endpoint_id" not in meta or "resource_specification" not in meta:
        return TaskEnvelope.from_bytes(body)
    return TaskEnvelope(
        task_id=meta["task_id"],
        function_id="",
        function=b"",
        args=b"",
        endpoint_id=meta["endpoint_id"],
        resource_specification=meta["resource_specification"],
    )


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
    return Manager(args.address, args.block_id, args.run_dir, config).run()


if __name__ == "__main__":
    sys.exit(main())
