"""Dependencies held by the service, on the real stack (service, RabbitMQ, endpoint)."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import time
from pathlib import Path

import pytest

from outpost import Client, Executor
from outpost.errors import DependencyError, NotFoundError
from outpost.executor.future import OutpostFuture

from .conftest import RunningEndpoint, RunningService
from .stack import make_endpoint

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "dag.py"
#: 400 loads + 400 squares + 200 pair sums: 1,000 tasks on three levels.
WIDTH = 400


def client_for(service: RunningService) -> Client:
    return Client(url=service.url, token=service.token)


def add(a: int, b: int = 0) -> int:
    return a + b


def fail(message: str) -> None:
    raise ValueError(message)


def test_dag_completes_after_the_submitting_process_exited(
    service: RunningService, endpoint: RunningEndpoint
) -> None:
    """docs/examples/dag.py submits 1,000 tasks and exits at once; another process (this one)
    reloads the group, waiting tasks included, and reads every result."""
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), endpoint.endpoint_id, str(WIDTH)],
        env=service.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    group = run.stdout.strip().splitlines()[-1]
    with Executor(task_group_id=group, client=client_for(service)) as ex:
        futures = ex.reload_tasks()
        assert len(futures) == 2.5 * WIDTH
        _done, not_done = concurrent.futures.wait(futures, timeout=400)
        assert not not_done
    sums = [f.result() for f in futures[2 * WIDTH :]]
    assert sums == [i * i + (i + 1) * (i + 1) for i in range(0, WIDTH, 2)]
    assert [f.result() for f in futures[WIDTH : 2 * WIDTH]] == [i * i for i in range(WIDTH)]


def test_failed_parent_fails_its_descendants_naming_it(
    service: RunningService, endpoint: RunningEndpoint
) -> None:
    with Executor(endpoint_id=endpoint.endpoint_id, client=client_for(service)) as ex:
        parent = ex.submit(fail, "parent broke")
        child = ex.submit(add, parent, 1)
        grandchild = ex.submit(add, child, b=child)
        sibling = ex.submit(add, 1, 2)
        late = None
        assert isinstance(parent.exception(timeout=120), ValueError)
        late = ex.submit(add, [parent][0])  # a parent already failed at submit
        errors = [f.exception(timeout=120) for f in (child, grandchild, late)]
        assert sibling.result(timeout=120) == 3
    assert all(isinstance(e, DependencyError) for e in errors), errors
    assert parent.task_id and parent.task_id in str(errors[0])
    assert child.task_id and child.task_id in str(errors[1])
    assert parent.task_id in str(errors[2])


def test_cancelled_parent_fails_its_children(
    service: RunningService, endpoint: RunningEndpoint
) -> None:
    with Executor(endpoint_id=endpoint.endpoint_id, client=client_for(service)) as ex:
        parent = ex.submit(time.sleep, 120)
        child = ex.submit(add, parent, 1)
        assert child.task_id_ready.wait(60) and child.task_id
        assert Client(url=service.url, token=service.token).get_task(child.task_id)["state"] in (
            "waiting",
        )
        # another process's view: the waiting child comes back as a pending future
        with Executor(task_group_id=ex.task_group_id, client=client_for(service)) as again:
            reloaded = {f.task_id: f for f in again.reload_tasks()}
            assert not reloaded[child.task_id].done()
            parent.cancel()
            assert isinstance(reloaded[child.task_id].exception(timeout=120), DependencyError)
        error = child.exception(timeout=120)
    assert parent.cancelled()
    assert isinstance(error, DependencyError)
    assert parent.task_id and parent.task_id in str(error) and "cancelled" in str(error)


def test_a_parent_of_another_user_is_refused(
    service: RunningService, endpoint: RunningEndpoint
) -> None:
    with Executor(endpoint_id=endpoint.endpoint_id, client=client_for(service)) as ex:
        theirs = ex.submit(add, 1, 1)
        assert theirs.result(timeout=120) == 2
    other = Client(url=service.url, token=service.create_user(f"mallory{time.time_ns()}"))
    own = other.register_endpoint(f"mallory-ep{time.time_ns()}")["endpoint_id"]
    stolen = OutpostFuture()
    stolen.task_id = str(theirs.task_id)
    with Executor(endpoint_id=own, client=other) as ex:
        child = ex.submit(add, stolen, 1)
        error = child.exception(timeout=60)
    assert isinstance(error, NotFoundError), error
    assert error.code == "unknown_dependency" and str(theirs.task_id) in str(error)


def test_a_parent_on_another_endpoint(
    service: RunningService, endpoint: RunningEndpoint, tmp_path: Path
) -> None:
    """The parent runs on one endpoint, the child on another: the value goes through the
    service."""
    second = make_endpoint(service, tmp_path, f"dep{time.time_ns() % 10**6}")
    try:
        with Executor(endpoint_id=endpoint.endpoint_id, client=client_for(service)) as first:
            parent = first.submit(add, 20, 1)
            with Executor(endpoint_id=second.endpoint_id, client=client_for(service)) as ex:
                child = ex.submit(add, parent, b=parent)
                assert child.result(timeout=120) == 42
    finally:
        second.run("stop", second.name, check=False)


@pytest.mark.parametrize(
    ("example", "argument", "printed"),
    [
        ("many_tasks.py", "50", str(sum(i * i for i in range(50)))),
        ("generator.py", "300", "(37, 0)"),
    ],
)
def test_the_other_campaign_examples_run(
    service: RunningService, endpoint: RunningEndpoint, example: str, argument: str, printed: str
) -> None:
    run = subprocess.run(
        [sys.executable, str(EXAMPLE.parent / example), endpoint.endpoint_id, argument],
        env=service.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == printed
