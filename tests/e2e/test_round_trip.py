"""The whole path, laptop to endpoint and back, with every part a real process."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import textwrap

import pytest

from outpost import Client, Executor, ShellFunction
from outpost.errors import RemoteExecutionError, TaskTimeout

from .conftest import RunningEndpoint, RunningService

pytestmark = pytest.mark.e2e


class CampaignError(Exception):
    """An exception class of the test module: the SDK must rebuild it, not a stand-in."""


def square(x: int) -> int:
    return x * x


def raise_campaign_error(message: str) -> None:
    raise CampaignError(message)


def client_for(service: RunningService) -> Client:
    return Client(url=service.url, token=service.token)


def test_a_thousand_tasks_round_trip(service: RunningService, endpoint: RunningEndpoint) -> None:
    with Executor(endpoint_id=endpoint.endpoint_id, client=client_for(service)) as ex:
        futures = [ex.submit(square, i) for i in range(1000)]
        _done, not_done = concurrent.futures.wait(futures, timeout=240)
        assert not not_done
        assert [f.result() for f in futures] == [i * i for i in range(1000)]
        assert len({f.task_id for f in futures}) == 1000


def test_exception_keeps_its_class_and_remote_traceback(
    service: RunningService, endpoint: RunningEndpoint
) -> None:
    with Executor(endpoint_id=endpoint.endpoint_id, client=client_for(service)) as ex:
        error = ex.submit(raise_campaign_error, "bad input 42").exception(timeout=60)
    assert isinstance(error, CampaignError)
    assert str(error) == "bad input 42"
    assert "raise_campaign_error" in str(error.__cause__)


def test_shell_function_round_trip(service: RunningService, endpoint: RunningEndpoint) -> None:
    greet = ShellFunction("echo hello {name}; echo oops >&2; exit 3")
    with Executor(endpoint_id=endpoint.endpoint_id, client=client_for(service)) as ex:
        first = ex.submit(greet, name="world").result(timeout=60)
        second = ex.submit(greet, name="again").result(timeout=60)
    assert (first.returncode, first.stdout, first.stderr) == (3, "hello world\n", "oops\n")
    assert second.stdout == "hello again\n"


def test_walltime_fails_the_task_and_the_endpoint_keeps_serving(
    service: RunningService, endpoint: RunningEndpoint
) -> None:
    import time

    with Executor(endpoint_id=endpoint.endpoint_id, client=client_for(service)) as ex:
        ex.resource_specification = {"walltime": 1}
        slow = ex.submit(time.sleep, 30)
        ex.resource_specification = {}
        after = ex.submit(square, 7)
        assert isinstance(slow.exception(timeout=60), TaskTimeout)
        assert after.result(timeout=60) == 49


def test_unpicklable_result_is_a_clear_error(
    service: RunningService, endpoint: RunningEndpoint
) -> None:
    def make_lock():  # a lock cannot be pickled
        import threading

        return threading.Lock()

    with Executor(endpoint_id=endpoint.endpoint_id, client=client_for(service)) as ex:
        error = ex.submit(make_lock).exception(timeout=60)
    assert error is not None
    assert "pickle" in str(error).lower()
    assert not isinstance(error, RemoteExecutionError) or error.remote_type


def test_fire_and_forget_reload_from_another_process(
    service: RunningService, endpoint: RunningEndpoint
) -> None:
    with Executor(endpoint_id=endpoint.endpoint_id, client=client_for(service)) as ex:
        futures = [ex.submit(square, i) for i in range(20)]
        task_ids = {f.task_id for f in concurrent.futures.as_completed(futures, timeout=120)}
        group = ex.task_group_id
    script = textwrap.dedent(
        f"""
        from outpost import Client, Executor
        client = Client(url={service.url!r}, token={service.token!r})
        ex = Executor(task_group_id={group!r}, client=client)
        futures = ex.reload_tasks()
        values = sorted(f.result(timeout=60) for f in futures)
        print(len(futures), sum(values))
        print(",".join(sorted(f.task_id for f in futures)))
        ex.shutdown()
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    count, total = run.stdout.splitlines()[0].split()
    assert (int(count), int(total)) == (20, sum(i * i for i in range(20)))
    assert set(run.stdout.splitlines()[1].split(",")) == task_ids
    first = next(iter(task_ids))
    assert Client(url=service.url, token=service.token).get_result(first) in {
        i * i for i in range(20)
    }
