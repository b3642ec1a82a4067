"""The high-throughput engine end to end in one process tree: interchange → manager → workers,
on the local provider, with real ZMQ sockets and real processes."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from outpost import ShellFunction
from outpost.protocol import TaskState
from outpost_endpoint.engine.high_throughput.layout import assign_cores
from outpost_endpoint.errors import EngineError

from . import tasks
from .conftest import EngineFactory, envelope, value, wait_until


def test_tasks_round_trip_through_two_workers(make_engine: EngineFactory) -> None:
    engine = make_engine(max_workers_per_node=2)
    futures = [engine.submit(envelope(pow, i, 2)) for i in range(20)]
    results = [f.result(60) for f in futures]
    assert [value(r) for r in results] == [i * i for i in range(20)]
    pids = {r.worker for r in results}
    assert 1 <= len(pids) <= 2  # at most the two workers of the one manager
    status = engine.status()
    assert status["workers"] == 2 and status["outstanding"] == 0
    assert status["managers"][0]["block_id"] == "block-1"
    assert status["blocks"][0]["state"] == "running"


def test_each_worker_sees_only_its_accelerator_and_its_cores(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    cores = sorted(os.sched_getaffinity(0))
    for affinity in ("block", "alternating"):
        engine = make_engine(available_accelerators=["0", "1"], cpu_affinity=affinity)
        gate = tmp_path / f"gate-{affinity}"
        flags = [tmp_path / f"{affinity}{i}" for i in range(2)]
        held = [
            engine.submit(envelope(tasks.report_when_released, str(gate), str(flag)))
            for flag in flags
        ]
        wait_until(lambda: flags[0].exists() and flags[1].exists(), what="both workers busy")  # noqa: B023
        gate.touch()
        reports = [value(f.result(60)) for f in held]
        assert sorted(r["cuda"] for r in reports) == ["0", "1"]
        expected = assign_cores(affinity, cores, 2)
        for report in reports:
            assert report["cores"] == list(expected[int(report["cuda"])])
            assert report["omp"] == str(len(expected[int(report["cuda"])]))
        engine.shutdown(wait=False)


def test_a_1_mb_argument_arrives_intact(make_engine: EngineFactory) -> None:
    engine = make_engine(max_workers_per_node=2)
    data = os.urandom(1024 * 1024)
    futures = [engine.submit(envelope(tasks.digest, data)) for _ in range(4)]
    assert {value(f.result(60)) for f in futures} == {tasks.digest(data)}


def test_forked_workers_hold_none_of_the_managers_sockets(make_engine: EngineFactory) -> None:
    """A worker is forked from its manager; it must not keep the manager's ZMQ connection or
    another worker's pipe open, or a dead manager would look alive to the interchange and its
    workers would never see their pipes end.  Checked for the first worker and for one forked
    later, once the manager's ZMQ socket exists."""
    engine = make_engine(max_workers_per_node=1)
    first = value(engine.submit(envelope(tasks.open_sockets)).result(60))
    assert first["sockets"] == 1, first  # its own pipe
    assert engine.submit(envelope(tasks.exit_now, 3)).result(60).state == TaskState.FAILED
    replacement = value(engine.submit(envelope(tasks.open_sockets)).result(60))
    assert replacement["pid"] != first["pid"]
    assert replacement["sockets"] == 1, replacement


def test_rocr_variable_when_configured(make_engine: EngineFactory) -> None:
    engine = make_engine(available_accelerators=1, accelerator_variable="ROCR_VISIBLE_DEVICES")
    report = value(engine.submit(envelope(tasks.placement)).result(60))
    assert report["rocr"] == "0"


def test_worker_exit_fails_only_its_task_and_the_worker_is_replaced(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine(max_workers_per_node=1)
    lost = engine.submit(envelope(tasks.exit_now, 7)).result(60)
    assert lost.state == TaskState.FAILED
    assert lost.error is not None and lost.error.reason == "worker_lost"
    assert "exit code 7" in lost.error.message and os.uname().nodename in lost.error.message
    assert lost.error.type == "outpost.errors.WorkerLost"
    assert value(engine.submit(envelope(pow, 3, 3)).result(60)) == 27


def test_worker_killed_by_signal_names_the_signal(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = make_engine(max_workers_per_node=1)
    started, gate = tmp_path / "started", tmp_path / "gate"
    future = engine.submit(envelope(tasks.hold, str(gate), str(started)))
    wait_until(lambda: started.exists() and started.read_text(), what="task start")
    worker = engine.status()["managers"][0]
    assert worker["busy"] == 1
    os.kill(int(started.read_text()), signal.SIGKILL)
    result = future.result(60)
    assert result.error is not None and result.error.reason == "worker_lost"
    assert "SIGKILL" in result.error.message
    assert value(engine.submit(envelope(pow, 2, 5)).result(60)) == 32


def test_lost_worker_task_is_retried_when_retries_are_configured(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = make_engine(max_workers_per_node=1, max_retries=1)
    marker = tmp_path / "first-try"
    # Dies on the first attempt only: the retry must succeed.
    future = engine.submit(envelope(_die_once, str(marker)))
    assert value(future.result(60)) == "second try"


def _die_once(marker: str) -> str:
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(9)
    return "second try"


def test_walltime_kills_the_task_and_the_worker_keeps_serving(make_engine: EngineFactory) -> None:
    engine = make_engine(max_workers_per_node=1)
    import time

    result = engine.submit(envelope(time.sleep, 30, spec={"walltime": 0.5})).result(60)
    assert result.state == TaskState.FAILED
    assert result.error is not None and result.error.reason == "timeout"
    assert result.error.type == "outpost.errors.TaskTimeout"
    assert value(engine.submit(envelope(pow, 2, 3)).result(60)) == 8


def test_cancel_running_and_queued_tasks(make_engine: EngineFactory, tmp_path: Path) -> None:
    engine = make_engine(max_workers_per_node=1)
    started, gate = tmp_path / "started", tmp_path / "gate"
    first = envelope(tasks.hold, str(gate), str(started))
    second = envelope(pow, 2, 2)
    running, queued = engine.submit(first), engine.submit(second)
    wait_until(started.exists, what="task start")
    assert engine.cancel(second.task_id)
    assert engine.cancel(first.task_id)
    assert not engine.cancel(first.task_id)  # already being cancelled
    assert queued.result(60).state == TaskState.CANCELLED
    assert running.result(60).state == TaskState.CANCELLED
    assert not engine.cancel("no-such-task")
    assert value(engine.submit(envelope(pow, 2, 4)).result(60)) == 16


def test_resource_specification_reaches_the_task(make_engine: EngineFactory) -> None:
    engine = make_engine(max_workers_per_node=1)
    spec = {"walltime": 60, "color": "blue"}
    seen = value(engine.submit(envelope(tasks.resource_env, spec=spec)).result(60))
    assert json.loads(seen["OUTPOST_RESOURCE_SPECIFICATION"]) == spec
    assert not seen["OUTPOST_MPI_NODEFILE"]


def test_impossible_requests_are_rejected_at_once(make_engine: EngineFactory) -> None:
    engine = make_engine(provider={"walltime": "00:01:00", "nodes_per_block": 1})
    too_long = engine.submit(envelope(pow, 1, 1, spec={"walltime": 120})).result(5)
    assert too_long.error is not None and too_long.error.reason == "rejected"
    assert "120 s is longer than the blocks' walltime of 60 s" in too_long.error.message
    too_big = engine.submit(envelope(pow, 1, 1, spec={"num_nodes": 2})).result(5)
    assert too_big.error is not None and "num_nodes=2" in too_big.error.message
    bad = engine.submit(envelope(pow, 1, 1, spec={"walltime": "soon"})).result(5)
    assert bad.error is not None and "'soon'" in bad.error.message


def test_hello_cuda_each_shell_task_sees_a_different_single_device(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    """The seed's hello_cuda example: 4 accelerators, 4 shell tasks in flight at once."""
    engine = make_engine(available_accelerators=4, cpu_affinity="alternating")
    gate = tmp_path / "gate"
    hello = ShellFunction(
        "touch {flag}; while [ ! -e {gate} ]; do sleep 0.02; done; "
        'echo "device $CUDA_VISIBLE_DEVICES"'
    )
    flags = [tmp_path / f"flag{i}" for i in range(4)]
    futures = [engine.submit(envelope(hello, flag=str(f), gate=str(gate))) for f in flags]
    wait_until(lambda: all(f.exists() for f in flags), what="four shell tasks running")
    gate.touch()
    outputs = sorted(value(f.result(60)).stdout.strip() for f in futures)
    assert outputs == ["device 0", "device 1", "device 2", "device 3"]


def test_worker_init_runs_before_the_workers_start(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    marker = tmp_path / "init-ran"
    engine = make_engine(
        max_workers_per_node=1,
        provider={"worker_init": f"export CAMPAIGN=alpha; touch {marker}"},
    )
    assert value(engine.submit(envelope(tasks.getenv, "CAMPAIGN")).result(60)) == "alpha"
    assert marker.exists()


def test_duplicate_task_ids_are_refused(make_engine: EngineFactory) -> None:
    engine = make_engine(max_workers_per_node=1)
    task = envelope(pow, 2, 2)
    engine.submit(task)
    with pytest.raises(EngineError, match=task.task_id):
        engine.submit(task)


def test_idle_blocks_are_released_and_come_back_on_demand(make_engine: EngineFactory) -> None:
    engine = make_engine(
        max_workers_per_node=1, max_idletime=0.3, provider={"min_blocks": 0, "max_blocks": 1}
    )
    assert value(engine.submit(envelope(pow, 2, 2)).result(60)) == 4
    wait_until(
        lambda: engine.status()["blocks"][0]["state"] == "cancelled", what="idle block released"
    )
    assert engine.status()["workers"] == 0
    assert value(engine.submit(envelope(pow, 3, 2)).result(60)) == 9  # a new block starts
    assert [b["state"] for b in engine.status()["blocks"]] == ["cancelled", "running"]


def test_shutdown_cancels_queued_and_abandons_running_tasks(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = make_engine(max_workers_per_node=1)
    started = tmp_path / "started"
    running = engine.submit(envelope(tasks.hold, str(tmp_path / "never"), str(started)))
    queued = engine.submit(envelope(pow, 2, 2))
    wait_until(started.exists, what="task start")
    engine.shutdown(wait=True, timeout=0.2)
    assert queued.cancelled() and running.cancelled()  # not run / no answer: redeliver
    assert engine.status()["blocks"][0]["state"] in ("running", "cancelled")
    with pytest.raises(EngineError):
        engine.submit(envelope(pow, 1, 1))


def test_status_file_describes_the_engine_for_local_tools(make_engine: EngineFactory) -> None:
    engine = make_engine(max_workers_per_node=2)
    assert value(engine.submit(envelope(pow, 2, 2)).result(60)) == 4
    path = engine.run_dir / "status.json"

    def managers() -> list[object]:
        try:
            return list(json.loads(path.read_text())["managers"])
        except (OSError, ValueError, KeyError):
            return []

    found = wait_until(managers, what="status.json listing the manager")
    assert found[0]["workers"] == 2
