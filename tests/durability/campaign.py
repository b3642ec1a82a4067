"""A task campaign against a real stack, and the checks every crash test makes on it.

A campaign submits ``N`` tasks ``work(i, runs)`` (``N`` = ``OUTPOST_DURABILITY_TASKS``, see
:data:`TASKS`) through the SDK's :class:`~outpost.Client`; each execution leaves a file in
``runs`` so a test can count how often tasks ran.  The verdict reads the service's database
directly: every task is terminal, has exactly one terminal event, and the stored value is right.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from outpost import Client
from outpost.protocol import ResultEnvelope, TaskState, deserialize, serialize
from outpost.protocol.envelopes import b64encode

from ..e2e.stack import RunningEndpoint, RunningService

#: Tasks per campaign.  The documented full run is 2,000 (``OUTPOST_DURABILITY_TASKS=2000``);
#: 2,000 takes about 9 s per test on a 2-core machine; set fewer for a quicker run.
TASKS = int(os.environ.get("OUTPOST_DURABILITY_TASKS", "2000"))
TERMINAL = ("success", "failed", "cancelled", "lost")
WAIT = float(os.environ.get("OUTPOST_DURABILITY_WAIT", "300"))


def work(i: int, runs: str, die_on: int = -1) -> int:
    """The campaign's task: note the run, maybe kill its own worker (once), return ``i * i``."""
    import os as _os
    import time as _time
    import uuid as _uuid

    with open(_os.path.join(runs, f"{i}.{_uuid.uuid4().hex}"), "w"):
        pass
    if i == die_on:
        _os._exit(3)  # the worker dies mid-task, as an OOM kill would do
    _time.sleep(0.002)  # a little work, so a crash lands mid-campaign
    return i * i


@dataclass
class Campaign:
    service: RunningService
    endpoint_id: str
    runs: Path
    function_id: str = ""
    journal: Path | None = None  # the endpoint's journal.db, for diagnostics
    task_ids: list[str] = field(default_factory=list)
    expected: dict[str, int] = field(default_factory=dict)  # task id -> i

    def client(self) -> Client:
        return Client(url=self.service.url, token=self.service.token, retries=5)

    def submit(self, count: int, *, first: int = 0, die_on: int = -1, batch: int = 500) -> None:
        """Submit tasks ``first .. first+count-1`` in batches (each batch one request id)."""
        client = self.client()
        try:
            if not self.function_id:
                self.function_id = client.register_function(work)
            for start in range(first, first + count, batch):
                numbers = range(start, min(start + batch, first + count))
                tasks = [self._task(i, die_on) for i in numbers]
                ids = client.submit_tasks(tasks, request_id=f"campaign-{uuid.uuid4()}")
                self.record(ids, numbers)
        finally:
            client.close()

    def _task(self, i: int, die_on: int) -> dict[str, object]:
        return {
            "function_id": self.function_id,
            "endpoint_id": self.endpoint_id,
            "args": b64encode(serialize(((i, str(self.runs), die_on), {}))),
        }

    def record(self, ids: list[str], numbers: range) -> None:
        self.task_ids.extend(ids)
        self.expected.update(zip(ids, numbers, strict=True))

    # ------------------------------------------------------------------ watching
    def finished(self) -> int:
        """How many of the campaign's tasks the service stores as terminal."""
        with database(self.service).connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT COUNT(*) FROM tasks WHERE state IN "
                        "('success', 'failed', 'cancelled', 'lost')"
                    )
                ).scalar_one()
            )

    def wait_for(self, done: int, timeout: float = WAIT) -> None:
        """Wait until ``done`` tasks are terminal (polls the database; fails at the deadline,
        saying where the missing tasks are)."""
        try:
            wait_until(lambda: self.finished() >= done, timeout, f"{done} finished tasks")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; {self.diagnose()}") from None

    def diagnose(self) -> str:
        """Where the unfinished tasks are: service row, endpoint journal, runs."""
        with database(self.service).connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT task_id, state, published FROM tasks WHERE state NOT IN "
                    "('success', 'failed', 'cancelled', 'lost') LIMIT 5"
                )
            ).fetchall()
        runs = self.runs_per_task()
        found = []
        for row in rows:
            where = "?"
            if self.journal is not None and self.journal.exists():
                with sqlite3.connect(self.journal) as journal:
                    entry = journal.execute(
                        "SELECT state FROM entries WHERE task_id = ?", (row.task_id,)
                    ).fetchone()
                where = entry[0] if entry else "not in the journal"
            i = self.expected.get(row.task_id, -1)
            found.append(
                f"task {i} {row.task_id}: service {row.state} published={row.published}, "
                f"endpoint journal {where}, ran {runs.get(i, 0)} time(s)"
            )
        return "unfinished: " + "; ".join(found)

    def runs_per_task(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for path in self.runs.iterdir():
            i = int(path.name.split(".", 1)[0])
            counts[i] = counts.get(i, 0) + 1
        return counts

    # ------------------------------------------------------------------ the verdict
    def verdict(self, *, failures: dict[int, str] | None = None) -> dict[str, int]:
        """Assert every task has exactly one terminal result with the right value (or the
        expected failure reason for the numbers in ``failures``); return counts."""
        failures = failures or {}
        with database(self.service).connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT t.task_id, t.state, t.result, (SELECT COUNT(*) FROM task_events e "
                    "WHERE e.task_id = t.task_id AND e.state IN "
                    "('success', 'failed', 'cancelled', 'lost')) AS finals FROM tasks t"
                )
            ).fetchall()
        stored = {row.task_id: row for row in rows}
        assert set(stored) == set(self.task_ids), "the service stores other tasks than submitted"
        assert len(self.task_ids) == len(set(self.task_ids))
        problems = []
        for task_id, i in self.expected.items():
            row = stored[task_id]
            if row.state not in TERMINAL or row.finals != 1 or row.result is None:
                problems.append(f"task {i} ({task_id}): {row.state}, {row.finals} final events")
                continue
            result = ResultEnvelope.from_bytes(bytes(row.result))
            if i in failures:
                reason = result.error.reason if result.error else None
                if result.state is not TaskState.FAILED or reason != failures[i]:
                    problems.append(f"task {i}: {result.state.value} ({reason}), not the failure")
            elif result.state is not TaskState.SUCCESS or value_of(result) != i * i:
                problems.append(f"task {i}: {result.state.value} {result.error}")
        assert not problems, f"{len(problems)} wrong task(s): {problems[:10]}"
        runs = self.runs_per_task()
        assert set(runs) == set(self.expected.values()), "some tasks never ran"
        return {
            "tasks": len(self.task_ids),
            "runs": sum(runs.values()),
            "ran_twice_or_more": sum(1 for n in runs.values() if n > 1),
        }


def value_of(result: ResultEnvelope) -> Any:
    """The task's return value; fails naming the error if it has none."""
    assert result.value is not None, f"task {result.task_id} has no value: {result.error}"
    return deserialize(result.value)


_DATABASES: dict[str, sa.Engine] = {}


def database(service: RunningService) -> sa.Engine:
    engine = _DATABASES.get(service.database_url)
    if engine is None:
        url = service.database_url  # pre-ping: a restarted database leaves stale connections
        engine = _DATABASES[url] = sa.create_engine(url, pool_pre_ping=True)
    return engine


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until true; AssertionError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)  # a poll interval, not a synchronisation


def endpoint_pid(endpoint: RunningEndpoint) -> int:
    return int((endpoint.home / "endpoints" / endpoint.name / "endpoint.pid").read_text())


def kill_endpoint(endpoint: RunningEndpoint) -> dict[int, int]:
    """``kill -9`` the endpoint daemon and every process it started -- process-pool workers,
    high-throughput blocks (their own sessions), managers, workers -- as a crashed login node
    would lose them (:mod:`.processes`); returns their pids and session ids once all are
    gone."""
    from .processes import kill_tree

    pid = endpoint_pid(endpoint)
    killed = kill_tree(pid)
    assert pid in killed, f"endpoint daemon {pid} was not running"
    wait_until(lambda: not any(alive(p) for p in killed), 30, f"{len(killed)} pids to die")
    return killed


def kill_process(process: subprocess.Popen[str]) -> None:
    """``kill -9`` one service-side process and reap it."""
    process.send_signal(signal.SIGKILL)
    process.wait(30)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
