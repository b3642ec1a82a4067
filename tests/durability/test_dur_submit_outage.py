"""A service outage while a script submits loses no task (issue 11, "a short outage shrinks a
campaign silently").

Real processes: a user script (the SDK's Executor) submits a first part of a campaign, the
``outpost-service`` process is killed with SIGKILL, the script submits the rest, and the service
is restarted on the same port, database and AMQP prefix while a real endpoint runs the tasks.
Counted: every task's result arrives, none is stored twice, and the group summary says
submitted == stored.  With a short ``submit_retry_for`` and the service still down, the script's
``shutdown()`` raises ``SubmitAbandonedError`` naming the unsent-tasks file, and
``outpost tasks resubmit FILE`` later completes the campaign.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

from outpost import Client, Executor

from ..e2e.stack import RunningEndpoint, RunningService, checked, cli, start_service
from .campaign import kill_process

SCRIPT = """
import json, sys
from outpost import Executor
from outpost.errors import SubmitAbandonedError


def square(x):
    return x * x


endpoint, first, total, retry_for = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ex = Executor(endpoint_id=endpoint, submit_retry_for=float(retry_for))
print("group", ex.task_group_id, flush=True)
futures = [ex.submit(square, i) for i in range(first)]
values = [f.result(timeout=120) for f in futures]  # the first part is done before the outage
print("phase1", flush=True)
sys.stdin.readline()  # the test has stopped the service
futures += [ex.submit(square, i) for i in range(first, total)]
print("phase2", flush=True)
try:
    values += [f.result(timeout=600) for f in futures[first:]]
    ex.shutdown()
except SubmitAbandonedError as exc:
    try:
        ex.shutdown()
    except SubmitAbandonedError as final:
        print("abandoned", final.path, flush=True)
        print("message", str(final).replace("\\n", " "), flush=True)
    sys.exit(4)
print("ids", json.dumps([f.task_id for f in futures]), flush=True)
print("values", json.dumps(values), flush=True)
"""

WAIT = 300


class Script:
    """The user's script as a process; its output lines are read by a thread into a queue."""

    def __init__(self, service: RunningService, home: Path, *args: object) -> None:
        path = home / "campaign.py"
        path.write_text(SCRIPT)
        self.process = subprocess.Popen(
            [sys.executable, str(path), *map(str, args)],
            env=service.env(home),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str) -> str:
        """The first line (from now) containing ``text``; fails if the script ends first."""
        while True:
            try:
                line = self._queue.get(timeout=WAIT)
            except queue.Empty:
                raise AssertionError(f"no {text!r} from the script:\n{self.output}") from None
            if line is None:
                raise AssertionError(f"the script ended before {text!r}:\n{self.output}")
            self.lines.append(line)
            if text in line:
                return line

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def finish(self) -> int:
        code = self.process.wait(WAIT)
        while (line := self._queue.get(timeout=WAIT)) is not None:
            self.lines.append(line)
        return code

    def value(self, key: str) -> str:
        [line] = [x for x in self.lines if x.startswith(key + " ")]
        return line[len(key) + 1 :]


def restart(service: RunningService) -> None:
    """Start the service again on the same port, database and AMQP prefix."""
    port = urlsplit(service.url).port
    assert port is not None
    again = start_service(
        service.home, service.database_url, user=None, prefix=service.amqp_prefix, port=port
    )
    assert again.url == service.url
    service.process = again.process  # the fixture stops whatever runs now
    service.output = again.output


def test_a_service_outage_while_submitting_300_tasks_loses_none(
    service: RunningService, endpoint: RunningEndpoint, tmp_path: Path
) -> None:
    first, total = 60, 300
    script = Script(service, tmp_path, endpoint.endpoint_id, first, total, 600)
    group = script.wait_for("group ").split()[1]
    script.wait_for("phase1")
    kill_process(service.process)
    script.go()
    script.wait_for("phase2")
    script.wait_for("is unreachable")  # the executor saw the outage, and holds the tasks
    restart(service)
    assert script.finish() == 0, "\n".join(script.lines)

    ids = json.loads(script.value("ids"))
    assert json.loads(script.value("values")) == [i * i for i in range(total)]
    assert len(set(ids)) == total
    warned = [x for x in script.lines if "is unreachable" in x]
    recovered = [x for x in script.lines if "answers again" in x]
    assert len(warned) == 1 and len(recovered) == 1, "\n".join(script.lines)
    client = Client(service.url, service.token)
    stored = client.get_task_group(group)
    assert sorted(t["task_id"] for t in stored) == sorted(ids)  # none stored twice
    summary = client.task_group_summary(group)
    assert summary["submitted"] == total == summary["stored"]
    assert summary["latest_states"] == {"success": total}
    client.close()


def test_an_outage_longer_than_retry_for_saves_the_tasks_to_resubmit(
    service: RunningService, endpoint: RunningEndpoint, tmp_path: Path
) -> None:
    first, total = 20, 70
    script = Script(service, tmp_path, endpoint.endpoint_id, first, total, 2)
    group = script.wait_for("group ").split()[1]
    script.wait_for("phase1")
    kill_process(service.process)
    script.go()
    assert script.finish() == 4, "\n".join(script.lines)
    path = Path(script.value("abandoned"))
    message = script.value("message")
    assert path.exists() and f"outpost tasks resubmit {path}" in message
    assert f"{total - first} task(s) of group {group} were not submitted" in message

    restart(service)
    env = service.env(tmp_path)
    resubmitted = checked([cli("outpost"), "tasks", "resubmit", str(path)], env, 120)
    assert f"resubmitted {total - first} task(s) of group {group}" in resubmitted.stdout
    again = checked([cli("outpost"), "tasks", "resubmit", str(path)], env, 120)  # idempotent
    assert f"resubmitted {total - first} task(s)" in again.stdout

    client = Client(service.url, service.token)
    with Executor(client=client, task_group_id=group) as ex:
        futures = ex.reload_tasks()
        assert sorted(f.result(WAIT) for f in futures) == sorted(i * i for i in range(total))
    summary = client.task_group_summary(group)
    assert summary["stored"] == total == summary["submitted"]  # none twice, none missing
    client.close()
