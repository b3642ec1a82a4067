"""Fill an Outpost store with N realistic task rows, fast, for :mod:`benchmarks.store_scale`.

Rows go straight into the store's SQLAlchemy tables (``outpost_service.store.schema``) in big
executemany batches, with the schema made by ``Database.ensure_schema`` -- the same tables,
indexes and schema version the service runs on.  What a long-lived service holds: several users
(one of them, ``bench``, owns a quarter of the rows and is the one measured), a few endpoints and
functions each, tasks in campaigns (task groups) of 1,000 spread over the last 13 days (inside the
14-day retention, so the service's retention sweep deletes nothing while it is measured), most
finished (success, some failed with a few kinds of error, their ``ResultEnvelope`` stored,
``expires_at`` set), some still queued or running, a tenth of the campaigns with an expiry
deadline, and the events the service records (received, queued, the final state).

Whatever the size, the fill also makes the *probe*: what the measurement reads -- the ``bench``
user's token, its endpoint and function, one 1,000-task campaign and samples of its task ids --
so an empty store and a full one are measured on identical objects.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from outpost.protocol import ErrorInfo, ResultEnvelope, TaskState, serialize
from outpost_service.store import Database
from outpost_service.store import users as user_store
from outpost_service.store.schema import endpoints, functions, task_events, tasks

USERS = 20
ENDPOINTS_PER_USER = 5
FUNCTIONS_PER_USER = 3
GROUP = 1000
#: rows per executemany (and per transaction)
BATCH = 20_000
DAY = 86400.0
RETENTION = 14 * DAY
#: the share of background rows the measured user owns
BENCH_SHARE = 0.25
#: (state, weight) of background tasks
MIX = (("success", 0.80), ("failed", 0.08), ("queued", 0.09), ("running", 0.03))
ERRORS = (
    ("ValueError", "invalid literal for int() with base 10: 'x'"),
    ("MemoryError", ""),
    ("TimeoutError", "task exceeded its walltime of 600 s"),
    ("KeyError", "'energy'"),
)


@dataclass
class Probe:
    """What the measurement uses; identical ids-wise whatever the fill size."""

    user: str
    token: str
    endpoint_id: str
    endpoint_name: str
    function_id: str
    group_id: str
    #: task ids of the probe campaign (1,000; success, failed and queued)
    group_task_ids: list[str] = field(default_factory=list)
    #: finished tasks with a result (success) of the probe campaign
    success_ids: list[str] = field(default_factory=list)


@dataclass
class FillStats:
    rows: int
    events: int
    seconds: float
    database_bytes: int | None = None


def _ids(rng: random.Random, n: int) -> list[str]:
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]


class _Rows:
    """Row builders sharing precomputed payloads (a result is a real ``ResultEnvelope``'s bytes
    with the task id put in)."""

    PLACEHOLDER = "00000000-0000-4000-8000-000000000000"

    def __init__(self) -> None:
        self.args = [serialize(((i, "x" * (i % 40)), {"seed": i})) for i in range(16)]
        success = ResultEnvelope(
            task_id=self.PLACEHOLDER,
            endpoint_id=self.PLACEHOLDER,
            state=TaskState.SUCCESS,
            value=serialize({"energy": -76.0267, "converged": True, "steps": 42}),
            timing={"received": 1.0, "started": 1.1, "finished": 2.5},
            node="x3006c0s13b0n0",
            worker="worker-3",
        ).to_bytes()
        self.success = success
        self.failed = [
            ResultEnvelope(
                task_id=self.PLACEHOLDER,
                endpoint_id=self.PLACEHOLDER,
                state=TaskState.FAILED,
                error=ErrorInfo(
                    type=kind,
                    message=message,
                    traceback="Traceback (most recent call last):\n"
                    f'  File "run.py", line 12\n{kind}: {message}\n',
                ),
                node="x3006c0s13b0n1",
                worker="worker-1",
            ).to_bytes()
            for kind, message in ERRORS
        ]

    def result(self, state: str, task_id: str, endpoint_id: str, index: int) -> bytes | None:
        if state == "success":
            template = self.success
        elif state == "failed":
            template = self.failed[index % len(self.failed)]
        else:
            return None
        return template.replace(self.PLACEHOLDER.encode(), task_id.encode(), 1).replace(
            self.PLACEHOLDER.encode(), endpoint_id.encode(), 1
        )


def _states(rng: random.Random, n: int) -> list[str]:
    names = [s for s, _ in MIX]
    weights = [w for _, w in MIX]
    return rng.choices(names, weights, k=n)


def _campaign(
    rows: _Rows,
    rng: random.Random,
    owner: int,
    endpoint_id: str,
    function_id: str,
    group_id: str,
    created: float,
    states: list[str],
    task_ids: list[str],
    deadline: float | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The task rows and event rows of one campaign created at ``created``."""
    task_rows: list[dict[str, Any]] = []
    event_rows: list[dict[str, Any]] = []
    request_id = uuid.UUID(int=rng.getrandbits(128), version=4).hex
    for index, (task_id, state) in enumerate(zip(task_ids, states, strict=True)):
        finished = state in ("success", "failed")
        completed = created + 1.0 + index * 0.05 if finished else None
        task_rows.append(
            {
                "task_id": task_id,
                "owner": owner,
                "endpoint_id": endpoint_id,
                "function_id": function_id,
                "task_group_id": group_id,
                "state": state,
                "args": rows.args[index % len(rows.args)],
                "resource_spec": {},
                "result": rows.result(state, task_id, endpoint_id, index),
                "created_at": created,
                "completed_at": completed,
                "expires_at": None if completed is None else completed + RETENTION,
                "published": True,
                "request_id": f"{request_id}-{index // 100}",  # the SDK submits in batches
                "deadline": deadline,
                "retried_by": None,
            }
        )
        event_rows.append({"task_id": task_id, "state": "received", "at": created})
        event_rows.append({"task_id": task_id, "state": "queued", "at": created})
        if completed is not None:
            event_rows.append({"task_id": task_id, "state": state, "at": completed})
    return task_rows, event_rows


def _tune_sqlite(engine: sa.Engine) -> None:
    """The fill is a throwaway bulk load: no journal, no fsync, a big page cache (the service
    opens the file afterwards in WAL mode with its own settings)."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=OFF")
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.execute("PRAGMA cache_size=-1000000")
        cursor.execute("PRAGMA foreign_keys=OFF")
        cursor.close()


def _people(
    engine: sa.Engine, rng: random.Random, now: float
) -> tuple[list[int], str, dict[int, list[str]], dict[int, list[str]]]:
    """The users (the first is ``bench``, with a token), their endpoints and functions."""
    owners: list[int] = []
    token = ""
    endpoint_ids: dict[int, list[str]] = {}
    function_ids: dict[int, list[str]] = {}
    with engine.begin() as conn:
        for index in range(USERS):
            user = user_store.get_or_create_user(conn, "bench" if index == 0 else f"user{index}")
            owners.append(user.user_id)
            if index == 0:
                token = user_store.issue_token(conn, user)
        for owner in owners:
            endpoint_ids[owner] = _ids(rng, ENDPOINTS_PER_USER)
            conn.execute(
                endpoints.insert(),
                [
                    {
                        "endpoint_id": eid,
                        "owner": owner,
                        "name": f"ep{i}",
                        "metadata": {"host": f"polaris-login-0{i}"},
                        "created_at": now - 30 * DAY,
                        "details": {},
                        "deleted": False,
                        "allowed_functions": None,
                    }
                    for i, eid in enumerate(endpoint_ids[owner])
                ],
            )
            function_ids[owner] = [f"{owner:08x}{i:056x}" for i in range(FUNCTIONS_PER_USER)]
            conn.execute(
                functions.insert(),
                [
                    {
                        "function_id": fid,
                        "payload": serialize(f"def f{owner}_{i}(x): return x".encode()),
                        "name": f"f{i}",
                        "created_by": owner,
                        "created_at": now - 30 * DAY,
                    }
                    for i, fid in enumerate(function_ids[owner])
                ],
            )
    return owners, token, endpoint_ids, function_ids


def fill(url: str, background: int, seed: int = 7) -> tuple[Probe, FillStats]:
    """Make the schema at ``url`` (an empty database) and put ``background`` task rows besides
    the probe campaign into it."""
    begin = time.perf_counter()
    database = Database(url)
    database.ensure_schema()
    database.dispose()
    engine = sa.create_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        _tune_sqlite(engine)
    rng = random.Random(seed)
    rows = _Rows()
    now = time.time()
    owners, token, endpoint_ids, function_ids = _people(engine, rng, now)
    bench = owners[0]
    probe = Probe(
        user="bench",
        token=token,
        endpoint_id=endpoint_ids[bench][0],
        endpoint_name="ep0",
        function_id=function_ids[bench][0],
        group_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    )
    # the probe campaign: 1,000 tasks an hour old, 80% success, 10% failed, 10% queued
    probe_states = ["success"] * 800 + ["failed"] * 100 + ["queued"] * 100
    rng.shuffle(probe_states)
    probe.group_task_ids = _ids(rng, GROUP)
    chosen = zip(probe.group_task_ids, probe_states, strict=True)
    probe.success_ids = [t for t, s in chosen if s == "success"]
    probe_rows, probe_events = _campaign(
        rows,
        rng,
        bench,
        probe.endpoint_id,
        probe.function_id,
        probe.group_id,
        now - 3600,
        probe_states,
        probe.group_task_ids,
        None,
    )
    pending_rows: list[dict[str, Any]] = []
    pending_events: list[dict[str, Any]] = []
    written = events = 0
    campaigns = (background + GROUP - 1) // GROUP
    for number in range(campaigns):
        if number == campaigns // 2:  # the probe campaign sits among the others
            pending_rows += probe_rows
            pending_events += probe_events
            probe_rows, probe_events = [], []
        size = min(GROUP, background - number * GROUP)
        owner = bench if rng.random() < BENCH_SHARE else rng.choice(owners[1:])
        created = now - 13 * DAY * (1 - number / max(1, campaigns))  # oldest first, like life
        recent = created > now - 2 * DAY
        states = _states(rng, size) if recent else ["success"] * size
        if not recent:  # old campaigns are finished, a few tasks failed
            for i in rng.sample(range(size), size // 12):
                states[i] = "failed"
        deadline = created + 7 * DAY if rng.random() < 0.1 else None
        more_rows, more_events = _campaign(
            rows,
            rng,
            owner,
            rng.choice(endpoint_ids[owner]),
            rng.choice(function_ids[owner]),
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            created,
            states,
            _ids(rng, size),
            deadline,
        )
        pending_rows += more_rows
        pending_events += more_events
        if len(pending_rows) >= BATCH:
            before = written
            written, events = _flush(engine, pending_rows, pending_events, written, events)
            pending_rows, pending_events = [], []
            if written // 200_000 > before // 200_000:
                print(f"  filled {written:,} task rows", flush=True)
    pending_rows += probe_rows  # (an empty store holds only the probe campaign)
    pending_events += probe_events
    written, events = _flush(engine, pending_rows, pending_events, written, events)
    if not sqlite:  # what autovacuum does to a live store, done now rather than while measured
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE) tasks, task_events")
    # (no ANALYZE on SQLite: the service never runs it, so its planner works without statistics)
    database_bytes = _database_bytes(engine)
    if sqlite:
        with engine.connect() as conn:  # back to the service's journal mode
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    engine.dispose()
    return probe, FillStats(written, events, time.perf_counter() - begin, database_bytes)


def _flush(
    engine: sa.Engine,
    task_rows: list[dict[str, Any]],
    event_rows: list[dict[str, Any]],
    written: int,
    events: int,
) -> tuple[int, int]:
    if task_rows:
        with engine.begin() as conn:
            conn.execute(tasks.insert(), task_rows)
            conn.execute(task_events.insert(), event_rows)
    return written + len(task_rows), events + len(event_rows)


def _database_bytes(engine: sa.Engine) -> int | None:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
            page = conn.exec_driver_sql("PRAGMA page_size").scalar()
            return int(pages or 0) * int(page or 0)
        value = conn.execute(sa.select(sa.func.pg_database_size(sa.func.current_database())))
        return int(value.scalar() or 0)
