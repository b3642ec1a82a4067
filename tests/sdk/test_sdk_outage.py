"""Submitting through a service outage (issue 11): the executor keeps accepted tasks and retries
with the same request id; past ``submit_retry_for`` it saves them to a file that resubmits
without duplicates.  Over real HTTP to the in-process fake service (tests/e2e and
tests/durability do the same against a real service process that is stopped and restarted)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sdk_fake_service import ENDPOINT, TOKEN, FakeService

from outpost import Client, Executor
from outpost.errors import ConfigurationError, ServiceUnavailableError, SubmitAbandonedError
from outpost.executor.outage import DEFAULT_RETRY_FOR, RETRY_FOR_ENV, retry_for_setting

WAIT = 30
TASKS = ("POST", "/v1/tasks")


def add(x: int, y: int = 0) -> int:
    return x + y


def test_an_outage_shorter_than_retry_for_loses_and_duplicates_nothing(
    service: FakeService, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    service.fail_next[TASKS] = 8  # several batches' worth of the client's own retries
    caplog.set_level(logging.WARNING, logger="outpost.executor")
    with Executor(ENDPOINT, client, submit_retry_for=120) as ex:
        futures = [ex.submit(add, i, 100) for i in range(40)]
        assert [f.result(timeout=WAIT) for f in futures] == [i + 100 for i in range(40)]
    assert service.fail_next[TASKS] == 0, "the outage was not exercised"
    assert len(service.tasks) == 40  # none dropped, none stored twice
    # every retried request kept its id: each id that failed was stored once, later
    assert set(service.attempted_request_ids) == set(service.request_ids)
    assert len(service.request_ids) == len(set(service.request_ids))
    lines = [r.getMessage() for r in caplog.records if r.name == "outpost.executor"]
    assert len([x for x in lines if "is unreachable" in x]) == 1, lines
    assert len([x for x in lines if "answers again" in x]) == 1, lines
    assert f"retrying for up to {120:g} s" in lines[0]


def test_the_executor_declares_how_many_tasks_it_accepted(
    service: FakeService, client: Client
) -> None:
    with Executor(ENDPOINT, client) as ex:
        for future in [ex.submit(add, i) for i in range(7)]:
            future.result(timeout=WAIT)
        group = ex.task_group_id
    [(key, count)] = service.group_submitted.items()
    assert key[0] == group and count == 7


def test_past_retry_for_the_unsent_calls_are_saved_and_resubmitted_once(
    service: FakeService, client: Client, tmp_path: Path
) -> None:
    service.fail_next[TASKS] = 10**9  # the service stays away
    ex = Executor(ENDPOINT, client, submit_retry_for=1)
    futures = [ex.submit(add, i, 1) for i in range(5)]
    errors = [f.exception(timeout=WAIT) for f in futures]
    assert all(isinstance(e, SubmitAbandonedError) for e in errors), errors
    error = errors[0]
    assert isinstance(error, ServiceUnavailableError)  # existing handlers still catch it
    path = Path(error.path)
    assert path.parent == tmp_path / "outpost-home" / "unsent" and path.exists()
    assert path.name.startswith(ex.task_group_id)
    assert f"outpost tasks resubmit {path}" in str(error) and "5 task(s)" in str(error)
    assert path.stat().st_mode & 0o777 == 0o600
    saved = json.loads(path.read_text())
    assert saved["calls"] == 5 and saved["submitted"] == 5
    with pytest.raises(SubmitAbandonedError, match="cannot submit more tasks"):
        ex.submit(add, 9)
    with pytest.raises(SubmitAbandonedError, match=r"never submitted.*outpost tasks resubmit"):
        ex.shutdown()
    assert service.tasks == {}

    service.fail_next[TASKS] = 0  # the service is back
    again = Executor(ENDPOINT, client, task_group_id=ex.task_group_id)
    resubmitted = again.resubmit_unsent(path)
    assert [f.result(timeout=WAIT) for f in resubmitted] == [i + 1 for i in range(5)]
    # the same file once more (a user not sure it worked): the same tasks, none stored twice
    twice = again.resubmit_unsent(path)
    assert [f.task_id for f in twice] == [f.task_id for f in resubmitted]
    assert len(service.tasks) == 5
    assert {t["task_group_id"] for t in service.tasks.values()} == {ex.task_group_id}
    # the group now declares the original executor's 5 accepted calls (not 5 + 5)
    assert sum(service.group_submitted.values()) == 5
    again.shutdown()


def test_connection_refused_is_an_outage_too(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}", TOKEN, retries=0)
    ex = Executor(ENDPOINT, client, submit_retry_for=0.5)
    error = ex.submit(add, 1).exception(timeout=WAIT)
    assert isinstance(error, SubmitAbandonedError), error
    assert "stayed unreachable" in str(error) and Path(error.path).exists()
    with pytest.raises(SubmitAbandonedError):
        ex.shutdown()


def test_retry_for_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RETRY_FOR_ENV, raising=False)
    assert retry_for_setting(None) == DEFAULT_RETRY_FOR >= 600
    monkeypatch.setenv(RETRY_FOR_ENV, "42")
    assert retry_for_setting(None) == 42.0
    assert retry_for_setting(3) == 3.0  # the argument wins
    monkeypatch.setenv(RETRY_FOR_ENV, "ten minutes")
    with pytest.raises(ConfigurationError, match=f"{RETRY_FOR_ENV} must be a number.*'ten"):
        retry_for_setting(None)
    with pytest.raises(ConfigurationError, match=r"submit_retry_for .*got -1"):
        Executor(ENDPOINT, Client("http://127.0.0.1:1", TOKEN), submit_retry_for=-1)


def test_a_damaged_unsent_file_is_refused_clearly(client: Client, tmp_path: Path) -> None:
    ex = Executor(ENDPOINT, client, task_group_id=str(uuid.uuid4()))
    bogus = tmp_path / "notes.json"
    bogus.write_text('{"hello": 1}')
    with pytest.raises(ConfigurationError, match="not an unsent-tasks file"):
        ex.resubmit_unsent(bogus)
    with pytest.raises(ConfigurationError, match="cannot read"):
        ex.resubmit_unsent(tmp_path / "missing.json")
    ex.shutdown()


def test_interrupting_during_an_outage_saves_the_queued_calls(
    service: FakeService, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    """What Ctrl-C in ``with Executor(...)`` does (``__exit__`` calls ``interrupt()``)."""
    service.fail_next[TASKS] = 10**9
    ex = Executor(ENDPOINT, client, submit_retry_for=600)
    futures = [ex.submit(add, i) for i in range(4)]
    with pytest.raises(KeyboardInterrupt), ex:
        raise KeyboardInterrupt  # returns at once: nothing waits for the 600 s of retries
    errors = [f.exception(timeout=WAIT) for f in futures]
    assert all(isinstance(e, SubmitAbandonedError) for e in errors), errors
    path = Path(errors[0].path)  # type: ignore[union-attr]
    saved = json.loads(path.read_text())
    assert sum(len(b["calls"]) for b in saved["batches"]) == 4
    err = capsys.readouterr().err
    assert f"Executor(task_group_id='{ex.task_group_id}').reload_tasks()" in err
    assert f"outpost tasks resubmit {path}" in err
    service.fail_next[TASKS] = 0
    again = Executor(ENDPOINT, client)
    # the batch in flight at the interrupt may be saved after the queued ones
    assert sorted(f.result(timeout=WAIT) for f in again.resubmit_unsent(path)) == [0, 1, 2, 3]
    again.shutdown()
    assert len(service.tasks) == 4


EXIT_DURING_OUTAGE = """
import sys
from outpost import Client, Executor

client = Client(sys.argv[1], "token", retries=0)
ex = Executor(sys.argv[2], client, submit_retry_for=600)
for i in range(3):
    ex.submit(abs, -i)
print("submitted", flush=True)
# the script ends without shutdown(): the exit waits for the queued tasks (fire-and-forget)
"""


def run_until_interrupted(
    tmp_path: Path, script_text: str, ready: Callable[[list[str]], bool]
) -> str:
    """Run ``script_text`` against a port nothing listens on, send SIGINT once ``ready`` holds
    for its output lines, and return all its output (it must end within 10 s)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = tmp_path / "script.py"
    script.write_text(script_text)
    env = {**os.environ, "OUTPOST_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, str(script), f"http://127.0.0.1:{port}", ENDPOINT],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line)
        if ready(lines):
            break
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=10)
    return "".join(lines) + rest


def test_ctrl_c_while_the_exit_waits_out_an_outage_saves_the_tasks(tmp_path: Path) -> None:
    # The interrupt is sent once the exit says it waits for the service (only then is the
    # interpreter in the exit wait this test is about, not still in submit()).
    output = run_until_interrupted(
        tmp_path, EXIT_DURING_OUTAGE, lambda lines: any("before exiting" in s for s in lines)
    )
    assert "KeyboardInterrupt" in output, output  # (an atexit handler's error keeps status 0)
    [path] = (tmp_path / "home" / "unsent").glob("*.json")
    assert f"outpost tasks resubmit {path}" in output
    assert json.loads(path.read_text())["calls"] == 3


SUBMITTING_DURING_OUTAGE = """
import sys
from outpost import Client, Executor

client = Client(sys.argv[1], "token", retries=0)
ex = Executor(sys.argv[2], client, submit_retry_for=600)
i = 0
while True:  # a long campaign's submit loop, interrupted by the user
    ex.submit(abs, -i)
    i += 1
"""


def test_ctrl_c_in_the_submit_loop_during_an_outage_leaves_at_once_and_saves_the_tasks(
    tmp_path: Path,
) -> None:
    """The script dies of the KeyboardInterrupt: its exit must not then wait out the outage
    (up to submit_retry_for) before saving what was accepted."""
    output = run_until_interrupted(
        tmp_path, SUBMITTING_DURING_OUTAGE, lambda lines: any("is unreachable" in s for s in lines)
    )
    assert "KeyboardInterrupt" in output, output
    [path] = (tmp_path / "home" / "unsent").glob("*.json")
    assert f"outpost tasks resubmit {path}" in output
    assert json.loads(path.read_text())["calls"] >= 1


def test_an_unsent_file_keeps_the_dependencies_of_held_tasks(tmp_path: Path) -> None:
    """A child the service would hold names its parents in the unsent file too, so the
    resubmitted child waits for them (its args hold ParentRefs, not values)."""
    from outpost.executor import unsent

    call = unsent.UnsentCall(
        name="child", function=b"fn", args=b"args", endpoint_id="ep", task_group_id="g",
        resource_specification={}, depends_on=["parent-1", "parent-2"],
    )  # fmt: skip
    record = unsent.UnsentRecord("g", "http://x", False, "client", 1)
    record.batches.append(unsent.UnsentBatch("req", [call]))
    path = tmp_path / "unsent.json"
    unsent.write(record, path)
    (again,) = unsent.read(path).batches[0].calls
    assert again.depends_on == ["parent-1", "parent-2"]
