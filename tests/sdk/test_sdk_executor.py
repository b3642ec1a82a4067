"""Executor and OutpostFuture semantics against the fake service over real HTTP."""

from __future__ import annotations

import concurrent.futures
import threading
import uuid

import pytest
from sdk_fake_service import ENDPOINT, TOKEN, FakeService

from outpost import Client, Executor, OutpostFuture, ShellFunction, ShellResult
from outpost.errors import (
    ConfigurationError,
    DependencyError,
    InvalidRequestError,
    PayloadTooLargeError,
    SerializationError,
)
from outpost.remote_errors import RemoteTraceback

WAIT = 30  # generous bound on every blocking call, so a bug fails instead of hanging


def add(a: int, b: int = 0) -> int:
    return a + b


def fail(message: str) -> None:
    raise KeyError(message)


def test_submit_returns_value_and_task_id(executor: Executor, service: FakeService) -> None:
    future = executor.submit(add, 2, b=3)
    assert isinstance(future, OutpostFuture) and isinstance(future, concurrent.futures.Future)
    assert future.result(timeout=WAIT) == 5
    assert future.task_id in service.tasks
    assert service.tasks[future.task_id]["task_group_id"] == executor.task_group_id


def test_task_id_is_set_once_accepted_before_the_result(
    executor: Executor, service: FakeService
) -> None:
    service.hold()
    future = executor.submit(add, 1)
    assert future.task_id_ready.wait(WAIT)
    assert service.state(future.task_id or "") == "queued"
    assert not future.done()
    service.release()  # the watcher's long-poll is woken by the result
    assert future.result(timeout=WAIT) == 1
    with pytest.raises(concurrent.futures.InvalidStateError):
        future.task_id = "another-id"


def test_submissions_are_batched(client: Client, service: FakeService) -> None:
    with Executor(ENDPOINT, client, batch_size=10, batch_interval=WAIT) as ex:
        futures = [ex.submit(add, i) for i in range(25)]
    assert [f.result() for f in futures] == list(range(25))
    assert service.batches == [10, 10, 5]
    assert service.requests.count(("POST", "/v1/functions")) == 1


def test_map_keeps_order(executor: Executor) -> None:
    assert list(executor.map(add, range(20), range(20), timeout=WAIT, chunksize=5)) == [
        2 * i for i in range(20)
    ]


def test_exception_has_original_class_and_remote_traceback(executor: Executor) -> None:
    future = executor.submit(fail, "missing")
    exc = future.exception(timeout=WAIT)
    assert type(exc) is KeyError and exc.args == ("missing",)
    assert isinstance(exc.__cause__, RemoteTraceback)
    assert "in fail" in str(exc.__cause__) and "KeyError" in str(exc.__cause__)
    with pytest.raises(KeyError):
        future.result(timeout=WAIT)


def test_exception_class_from_main(executor: Executor) -> None:
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec(
        "class Oops(RuntimeError):\n    pass\ndef boom():\n    raise Oops('from main')\n", namespace
    )
    exc = executor.submit(namespace["boom"]).exception(timeout=WAIT)  # type: ignore[arg-type]
    assert type(exc).__name__ == "Oops" and isinstance(exc, RuntimeError)
    assert str(exc) == "from main"


def test_wait_and_as_completed(executor: Executor) -> None:
    futures = [executor.submit(add, i) for i in range(10)]
    done, not_done = concurrent.futures.wait(futures, timeout=WAIT)
    assert len(done) == 10 and not not_done
    completed = concurrent.futures.as_completed(futures, timeout=WAIT)
    assert sorted(f.result() for f in completed) == list(range(10))


def test_shell_function_submitted_many_times(executor: Executor) -> None:
    sh = ShellFunction("echo task {n}")
    results = [executor.submit(sh, n=i) for i in range(3)]
    assert [r.result(timeout=WAIT) for r in results] == [
        ShellResult(0, f"task {i}\n", "", f"echo task {i}") for i in range(3)
    ]


# ---------------------------------------------------------------------------- cancellation
def test_cancel_before_sending_never_submits(client: Client, service: FakeService) -> None:
    ex = Executor(ENDPOINT, client, batch_interval=WAIT)  # the batch waits for quiet
    future = ex.submit(add, 1)
    assert future.cancel() and future.cancelled()
    assert future.task_id is None
    ex.shutdown(wait=True)
    assert service.tasks == {}
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(timeout=0)


def test_cancel_a_queued_task(executor: Executor, service: FakeService) -> None:
    service.hold()
    future = executor.submit(add, 1)
    waiter = concurrent.futures.as_completed([future], timeout=WAIT)
    assert future.task_id_ready.wait(WAIT)
    assert future.cancel()
    assert future.cancelled() and future.done()
    assert next(waiter) is future  # waiters are notified of the cancellation
    service.release()
    assert service.state(future.task_id or "") == "cancelled"
    assert service.calls == 0


def test_cancel_a_finished_task_is_false(executor: Executor) -> None:
    future = executor.submit(add, 1)
    assert future.result(timeout=WAIT) == 1
    assert not future.cancel()


def test_shutdown_cancel_futures(client: Client, service: FakeService) -> None:
    service.hold()
    ex = Executor(ENDPOINT, client)
    sent = [ex.submit(add, i) for i in range(3)]
    for future in sent:
        assert future.task_id_ready.wait(WAIT)
    ex.shutdown(wait=True, cancel_futures=True)
    assert all(f.cancelled() for f in sent)
    assert {service.state(f.task_id or "") for f in sent} == {"cancelled"}
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(add, 1)


# ---------------------------------------------------------------------------- dependencies
def test_futures_in_arguments_are_dependencies(executor: Executor) -> None:
    a = executor.submit(add, 1, 2)
    b = executor.submit(add, a, b=a)
    c = executor.submit(sum, [a, b, (a,)][:2])
    d = executor.submit(len, {"x": c, "y": [b]})
    e = executor.submit(add, a, b={"nested": [b]}["nested"][0])
    assert b.result(timeout=WAIT) == 6
    assert c.result(timeout=WAIT) == 9
    assert d.result(timeout=WAIT) == 2
    assert e.result(timeout=WAIT) == 9


def test_failed_dependency_fails_child_without_running_it(
    executor: Executor, service: FakeService
) -> None:
    parent = executor.submit(fail, "parent broke")
    child = executor.submit(add, parent, 1)
    grandchild = executor.submit(add, child)
    exc = child.exception(timeout=WAIT)
    assert isinstance(exc, DependencyError)
    assert parent.task_id and parent.task_id in str(exc)
    assert isinstance(grandchild.exception(timeout=WAIT), DependencyError)
    assert child.task_id in str(grandchild.exception())
    # the service held them (it named their parents), and ran only the parent
    assert child.task_id and service.tasks[child.task_id]["depends_on"] == [parent.task_id]
    assert service.calls == 1


def test_cancelled_dependency(client: Client, service: FakeService) -> None:
    with Executor(ENDPOINT, client, batch_interval=WAIT) as ex:
        parent = ex.submit(add, 1)
        child = ex.submit(add, parent)
        assert parent.cancel()
    assert "cancelled" in str(child.exception(timeout=WAIT))
    assert service.tasks == {}


# ---------------------------------------------------------------------------- fire-and-forget
def test_reload_tasks_from_a_second_executor(client: Client, service: FakeService) -> None:
    service.hold()
    group = str(uuid.uuid4())
    first = Executor(ENDPOINT, client, task_group_id=group)
    sent = [first.submit(add, i, 100) for i in range(5)]
    for future in sent:
        assert future.task_id_ready.wait(WAIT)
    first.shutdown(wait=False)

    other_client = Client(service.url, TOKEN)
    with Executor(task_group_id=uuid.UUID(group), client=other_client) as second:
        assert second.task_group_id == group
        reloaded = second.reload_tasks()
        assert {f.task_id for f in reloaded} == {f.task_id for f in sent}
        service.release()
        assert sorted(f.result(timeout=WAIT) for f in reloaded) == [100, 101, 102, 103, 104]
    # results stay readable after being read
    with Executor(task_group_id=group, client=other_client) as third:
        assert sorted(f.result(timeout=WAIT) for f in third.reload_tasks())[0] == 100
    assert sorted(f.result(timeout=WAIT) for f in sent)[-1] == 104


# ---------------------------------------------------------------------------- errors at submit
def test_unpicklable_arguments_fail_at_submit(executor: Executor) -> None:
    with pytest.raises(SerializationError, match="cannot submit task add"):
        executor.submit(add, threading.Lock())


def test_too_large_arguments_fail_at_submit(service: FakeService) -> None:
    client = Client(service.url, TOKEN, payload_limit=10_000)
    with Executor(ENDPOINT, client) as ex, pytest.raises(PayloadTooLargeError, match="too large"):
        ex.submit(len, b"x" * 20_000)


def test_refused_batch_fails_its_futures(executor: Executor, service: FakeService) -> None:
    service.fail_status = 422  # refused, not an outage: waiting would not help
    service.fail_next[("POST", "/v1/tasks")] = 1
    future = executor.submit(add, 1)
    exc = future.exception(timeout=WAIT)
    assert isinstance(exc, InvalidRequestError)
    assert "submitting a batch of 1 tasks failed" in str(exc)
    assert future.task_id is None and future.task_id_ready.is_set()
    assert executor.submit(add, 2).result(timeout=WAIT) == 2


def test_configuration_errors(client: Client) -> None:
    with pytest.raises(ConfigurationError, match="endpoint_id"):
        Executor(client=client).submit(add, 1)
    with pytest.raises(ConfigurationError, match="UUID"):
        Executor(ENDPOINT, client, task_group_id="not-a-uuid")
    with pytest.raises(ConfigurationError, match="JSON"):
        Executor(ENDPOINT, client, resource_specification={"x": object()})


def test_resource_specification_is_copied_at_submit(
    executor: Executor, service: FakeService
) -> None:
    executor.resource_specification = {"num_nodes": 2, "ranks_per_node": 4}
    first = executor.submit(add, 1)
    spec = executor.resource_specification
    spec["num_nodes"] = 99  # a copy: does not change the executor
    executor.resource_specification = {"walltime": 5}
    second = executor.submit(add, 2)
    assert first.result(timeout=WAIT) == 1 and second.result(timeout=WAIT) == 2
    assert service.tasks[first.task_id or ""]["resource_specification"] == {
        "num_nodes": 2,
        "ranks_per_node": 4,
    }
    assert service.tasks[second.task_id or ""]["resource_specification"] == {"walltime": 5}


def test_queued_tasks_are_sent_when_the_process_exits(service: FakeService) -> None:
    """Fire-and-forget: a script that never calls shutdown() still submits what it queued."""
    import subprocess
    import sys

    script = (
        "from outpost import Client, Executor\n"
        f"ex = Executor({ENDPOINT!r}, Client({service.url!r}, {TOKEN!r}), batch_interval=60)\n"
        "future = ex.submit(pow, 3, 3)\n"
        "print('submitted', future.task_id)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=WAIT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "submitted None"  # still queued when the script ended
    assert [t["function_id"] for t in service.tasks.values()] == [next(iter(service.functions))]


def test_cancel_a_running_task_ends_cancelled_when_the_service_says_so(
    executor: Executor, service: FakeService
) -> None:
    from outpost.protocol import ErrorInfo, ResultEnvelope, TaskState

    service.hold()
    future = executor.submit(add, 1)
    assert future.task_id_ready.wait(WAIT)
    task_id = future.task_id or ""
    with service.cond:
        service.tasks[task_id]["state"] = "running"  # as if a worker had started it
    assert not future.cancel()  # the service asked the endpoint to kill it
    assert not future.done()
    error = ErrorInfo("CancelledError", "killed on request", reason="cancelled")
    service.finish(task_id, ResultEnvelope(task_id, ENDPOINT, TaskState.CANCELLED, error=error))
    done, _ = concurrent.futures.wait([future], timeout=WAIT)
    assert done == {future} and future.cancelled()


def test_watcher_survives_result_poll_errors(executor: Executor, service: FakeService) -> None:
    service.fail_next[("POST", "/v1/results")] = 4  # more than the client's own retries
    assert executor.submit(add, 7).result(timeout=WAIT) == 7
    assert service.requests.count(("POST", "/v1/results")) >= 5


def test_result_from_a_newer_protocol_fails_the_future_clearly(
    executor: Executor, service: FakeService
) -> None:
    from outpost.errors import ProtocolVersionError
    from outpost.protocol import PROTOCOL_VERSION, ResultEnvelope, TaskState

    service.hold()
    future = executor.submit(add, 1)
    assert future.task_id_ready.wait(WAIT)
    task_id = future.task_id or ""
    result = ResultEnvelope(task_id, ENDPOINT, TaskState.SUCCESS).to_dict()
    with service.cond:
        service.tasks[task_id]["result"] = result | {"v": PROTOCOL_VERSION + 1}
        service.cond.notify_all()
    with pytest.raises(ProtocolVersionError, match="upgrade outpost here"):
        future.result(timeout=WAIT)


def test_default_batching_sends_a_lone_task_and_batches_a_loop(
    client: Client, service: FakeService
) -> None:
    # batch_interval=0 (the default): no linger, yet the tasks queued while one request is in
    # flight go together in the next one, so a loop of submits is not one request per task.
    with Executor(ENDPOINT, client) as ex:
        assert ex.submit(add, 1).result(timeout=WAIT) == 1
        futures = [ex.submit(add, i) for i in range(300)]
        assert [f.result(timeout=WAIT) for f in futures] == list(range(300))
    assert service.batches[0] == 1
    assert sum(service.batches) == 301
    assert len(service.batches) < 100, service.batches
