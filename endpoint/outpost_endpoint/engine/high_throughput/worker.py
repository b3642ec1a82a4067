"""One worker process of a manager: forked and pinned once at start, then runs tasks from a pipe.

The manager *forks* its workers (:data:`START_METHOD`): a forked worker starts in milliseconds,
with every module the manager imported, instead of a fresh interpreter importing them again --
that import was most of the engine's cold start.  A forked child holds copies of every
descriptor the manager had (its ZMQ connection, both ends of every worker's pipe), so the first
thing a worker does is close them but its own end of its own pipe: otherwise a manager's death
would reach neither the interchange as a disconnect nor the workers as the end of their pipes.

The pipe carries the frames of :mod:`.wire` (task header, extra environment, function, args;
answered by result header and value), so payloads arrive as the bytes the client serialized.
Each frame is a message of multiprocessing's ``Connection`` (a length, then the bytes), but a
task's or result's frames are written with one ``sendmsg``: one write wakes the reader once,
where four writes would wake it up to four times (on a busy node, four context switches).
Tasks run with :func:`outpost_endpoint.engine.worker.run_in_environment`, as in every engine.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import socket
import stat
import struct
import sys
from collections.abc import Iterable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.context import ForkContext, SpawnContext

from outpost_endpoint.engine.high_throughput import wire
from outpost_endpoint.engine.worker import prepare_process, run_in_environment, task_environment

#: how managers start workers: ``fork`` where the platform has it (see the module docstring)
START_METHOD = "fork" if hasattr(os, "fork") else "spawn"


def worker_context() -> ForkContext | SpawnContext:
    """The multiprocessing context of :data:`START_METHOD`."""
    if START_METHOD == "fork":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def pin(env: dict[str, str], cores: tuple[int, ...]) -> None:
    """Apply a worker's slot: device variables, OMP_NUM_THREADS, CPU affinity."""
    os.environ.update(env)
    if cores:
        try:
            os.sched_setaffinity(0, cores)
        except OSError as exc:  # cores outside the job's cpuset: run unpinned, say why
            print(f"outpost worker: cannot pin to cores {cores}: {exc}", file=sys.stderr)


def close_inherited_fds(keep: Iterable[int]) -> None:
    """Close the manager's sockets (worker pipes are socket pairs) and other descriptors but
    stdin/stdout/stderr and ``keep`` (see the module docstring).  OS pipes (FIFOs) stay open:
    they are multiprocessing's process sentinels, and the write end of this worker's own
    sentinel must live as long as the worker does (the manager learns of its death from it);
    the ends of other workers' sentinels held here delay nothing."""
    kept = {0, 1, 2, *keep}
    try:
        open_fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: look at every possible descriptor
        open_fds = list(range(os.sysconf("SC_OPEN_MAX")))
    for fd in open_fds:
        if fd in kept:
            continue
        with contextlib.suppress(OSError):  # not open (the listing's own descriptor, ...)
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.close(fd)


def frame_socket(conn: Connection) -> socket.socket:
    """A socket on ``conn``'s descriptor (a duplicate), for :func:`send_frames`."""
    return socket.socket(fileno=os.dup(conn.fileno()))


def send_frames(sock: socket.socket, frames: Sequence[bytes | memoryview]) -> None:
    """Write ``frames`` as consecutive ``Connection`` messages (``recv_bytes`` reads each), in
    one system call where the socket takes them all, without joining their bytes."""
    buffers: list[bytes | memoryview] = []
    for frame in frames:
        size = len(frame)
        buffers += [_SIZE.pack(size) if size <= 0x7FFFFFFF else _HUGE.pack(-1, size), frame]
    sent = sock.sendmsg(buffers)
    total = sum(len(b) for b in buffers)
    if sent < total:  # a signal cut the write short: send the rest in order
        rest = memoryview(b"".join(buffers))[sent:]
        sock.sendall(rest)


_SIZE = struct.Struct("!i")
_HUGE = struct.Struct("!iQ")


def serve_frames(conn: Connection, payload_limit: int | None) -> None:
    """Run tasks from ``conn`` until told to stop (an empty header) or the manager goes away."""
    sock = frame_socket(conn)
    while True:
        try:
            header = conn.recv_bytes()
            if not header:
                return
            extra, function, args = conn.recv_bytes(), conn.recv_bytes(), conn.recv_bytes()
        except (EOFError, OSError):
            return
        fields = wire.loads(header)
        task = wire.task_from_header(fields, function, args)
        environment = task_environment(task)
        if extra:
            environment.update(json.loads(extra))
        result = run_in_environment(task, fields.get("received"), environment, payload_limit)
        try:
            send_frames(sock, wire.result_frames(result))
        except OSError:  # the manager is gone
            return


def worker_main(
    conn: Connection, env: dict[str, str], cores: tuple[int, ...], payload_limit: int | None
) -> None:
    """Run tasks from ``conn`` until told to stop or the manager goes away."""
    if START_METHOD == "fork":
        close_inherited_fds([conn.fileno()])
    prepare_process()
    pin(env, cores)
    serve_frames(conn, payload_limit)
