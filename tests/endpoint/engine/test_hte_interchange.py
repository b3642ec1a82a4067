"""The interchange on its own: CurveZMQ admission and walltime-aware dispatch, with real
sockets (managers played by DEALER sockets in the test)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
import zmq

from outpost.protocol import ResultEnvelope
from outpost_endpoint.engine.high_throughput import security, wire
from outpost_endpoint.engine.high_throughput.interchange import (
    Interchange,
    ManagerRecord,
    Scheduling,
    TaskRecord,
)

from .conftest import envelope, wait_until


@pytest.fixture
def keys() -> security.CurveKeys:
    return security.generate()


@pytest.fixture
def interchange(keys: security.CurveKeys) -> Iterator[Interchange]:
    built = Interchange(keys, Scheduling(heartbeat_period=0.2, heartbeat_threshold=30))
    yield built
    built.stop()


def record(walltime: float | None = None, nodes: int = 0) -> TaskRecord:
    future: Future[ResultEnvelope] = Future()
    spec = {"num_nodes": nodes} if nodes else {}
    return TaskRecord(envelope(pow, 2, 2, spec=spec), future, time.time(), walltime, nodes, 0)


def manager(manager_id: str, block: str, workers: int, seconds_left: float) -> ManagerRecord:
    return ManagerRecord(
        manager_id=manager_id, hostname=f"host-{manager_id}", block_id=block, workers=workers,
        expires_at=time.time() + seconds_left, accelerators=[], last_heard=time.monotonic(),
    )  # fmt: skip


def sent(interchange: Interchange) -> list[tuple[str, str, list[str]]]:
    """(manager id, task id, MPI hosts) of every TASK in the outbox, in order."""
    out = []
    for frames in interchange._outbox:
        if frames[1] == wire.TASK:
            for header in frames[2 :: wire.TASK_FRAMES]:
                meta = wire.loads(header)
                out.append((frames[0].decode(), meta["task_id"], meta["nodes"]))
    return out


def test_walltime_aware_dispatch(interchange: Interchange) -> None:
    long_task, short_task = record(walltime=600), record(walltime=30)
    with interchange.lock:
        interchange.managers["m1"] = manager("m1", "b1", workers=2, seconds_left=60)
        for r in (long_task, short_task):
            interchange.tasks[r.task.task_id] = r
            interchange.queues[r.shape].append(r.task.task_id)
        interchange._dispatch()
        # the 600 s task is not sent to a block with 60 s left; the 30 s task is
        assert [s[1] for s in sent(interchange)] == [short_task.task.task_id]
        assert list(interchange.queues["python"]) == [long_task.task.task_id]
        interchange.managers["m2"] = manager("m2", "b2", workers=1, seconds_left=3600)
        interchange._dispatch()
        assert sent(interchange)[-1][:2] == ("m2", long_task.task.task_id)


def test_dispatch_respects_workers_plus_prefetch(keys: security.CurveKeys) -> None:
    interchange = Interchange(keys, Scheduling(prefetch_capacity=1))
    try:
        records = [record() for _ in range(5)]
        with interchange.lock:
            interchange.managers["m1"] = manager("m1", "b1", workers=2, seconds_left=600)
            for r in records:
                interchange.tasks[r.task.task_id] = r
                interchange.queues["python"].append(r.task.task_id)
            interchange._dispatch()
            assert len(sent(interchange)) == 3  # 2 workers + 1 prefetched
    finally:
        interchange.stop()


def test_mpi_tasks_are_packed_onto_free_nodes(interchange: Interchange) -> None:
    two, one, three = record(nodes=2), record(nodes=1), record(nodes=3)
    with interchange.lock:
        for i in range(3):
            interchange.managers[f"n{i}"] = manager(f"n{i}", "b1", workers=1, seconds_left=600)
        for r in (two, one, three):
            interchange.tasks[r.task.task_id] = r
            interchange.queues[r.shape].append(r.task.task_id)
        interchange._dispatch()
        placed = sent(interchange)
    assert placed == [
        ("n0", two.task.task_id, ["host-n0", "host-n1"]),
        ("n2", one.task.task_id, ["host-n2"]),
    ]
    assert list(interchange.queues["mpi:3"]) == [three.task.task_id]  # waits for free nodes


def _dealer(
    context: zmq.Context[zmq.Socket[bytes]],
    address: str,
    name: str,
    keys: tuple[bytes, bytes, bytes] | None,
) -> zmq.Socket[bytes]:
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, name.encode())
    sock.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        security.secure_client(sock, *keys)
    sock.connect(address)
    sock.send_multipart(
        [wire.REGISTER, wire.dumps({"hostname": name, "block_id": "b", "workers": 4})]
    )
    return sock


def test_only_a_manager_with_this_starts_keys_is_admitted(
    interchange: Interchange, keys: security.CurveKeys
) -> None:
    interchange.start()
    address = f"tcp://127.0.0.1:{interchange.port}"
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    other = security.generate()
    try:
        stale = (keys.server_public, other.client_public, other.client_secret)
        wrong_server = (other.server_public, keys.client_public, keys.client_secret)
        rogues = [
            _dealer(context, address, "plain", None),  # no encryption at all
            # knows the server's public key but has its own keypair (e.g. an earlier start)
            _dealer(context, address, "stale", stale),
            # has our client keys but talks to the wrong server key
            _dealer(context, address, "wrongserver", wrong_server),
        ]
        good = _dealer(
            context, address, "good", (keys.server_public, keys.client_public, keys.client_secret)
        )
        wait_until(lambda: "good" in interchange.managers, 30, "the good manager to register")
        task = record()
        interchange.add(task)
        assert good.poll(30_000), "the admitted manager got no task"
        frames = good.recv_multipart()
        while frames[0] != wire.TASK:
            assert good.poll(30_000)
            frames = good.recv_multipart()
        assert wire.loads(frames[1])["task_id"] == task.task.task_id
        assert frames[2:4] == [task.task.function, task.task.args]  # the payloads, as they were
        assert set(interchange.managers) == {"good"}
        for rogue in rogues:
            assert not rogue.poll(500), "a manager without this start's keys received data"
    finally:
        context.destroy(linger=0)


def test_key_files_are_private(tmp_path: Path, keys: security.CurveKeys) -> None:
    directory = security.write_client_files(keys, tmp_path / "curve")
    assert directory.stat().st_mode & 0o777 == 0o700
    for path in directory.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600
    assert security.read_client_files(directory) == (
        keys.server_public, keys.client_public, keys.client_secret,
    )  # fmt: skip


def test_a_task_that_cannot_be_delivered_goes_back_to_the_queue(
    interchange: Interchange,
) -> None:
    """A manager that registered and then disconnected: the task is not lost with it."""
    task = record()
    lost: list[str] = []
    interchange.on_manager_lost = lambda manager, why: lost.append(why)
    with interchange.lock:
        interchange.managers["ghost"] = manager("ghost", "b1", workers=1, seconds_left=600)
    interchange.start()
    interchange.add(task)
    wait_until(lambda: lost, 30, "the ghost manager to be declared lost")
    assert lost == ["it disconnected from the interchange"]
    with interchange.lock:
        assert list(interchange.queues["python"]) == [task.task.task_id]
        assert task.manager_id is None and task.attempts == 0
    assert not task.future.done()
