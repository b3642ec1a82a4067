"""Benchmark 6, store scale: submit and status latency with N task rows in the store.

For each backend (SQLite, the embedded default, and PostgreSQL), a store is filled with N
realistic task rows (:mod:`benchmarks.store_fill`, straight through the store's tables) and a
real ``outpost-service serve`` is started on it; then the real SDK ``Client`` times a few hundred
of each call a user makes, round-robin: submit one task and a batch of 100, the status of one task
(``GET /v1/tasks/<id>``) and of 100 (``POST /v1/results``), a result fetch
(``Client.get_result``), a campaign's tasks and its summary (what ``outpost tasks group`` shows:
both calls), and the listing of the user's endpoints.  The same is measured on an *empty* store
(the same probe objects, no other rows), and the ratio full / empty of each percentile says
whether latency grows with the row count.

The service's background queries -- the republish sweeper (``unpublished``), expiry
(``due``), the retention sweep (``purge_expired``, with nothing due and with a day's worth due)
and each store query behind the calls above -- are then timed in-process on the same database,
with their query plans (``EXPLAIN QUERY PLAN`` / ``EXPLAIN``) recorded in the result file.

PostgreSQL runs on ``OUTPOST_TEST_POSTGRES_URL`` (default the local ``test`` database, used only
to create and drop a throwaway ``outpost_bench_<pid>_<n>`` database); the SQLite file lives in a
temporary folder under ``/tmp``.  Quick default: 100,000 rows; ``--full``: 1,000,000.
"""

from __future__ import annotations

import functools
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from benchmarks.common import percentiles, show
from benchmarks.store_fill import DAY, FillStats, Probe, fill
from outpost import Client
from outpost.protocol import serialize
from outpost.protocol.envelopes import b64encode
from outpost_service.store import Database
from outpost_service.store import access as access_store
from outpost_service.store import endpoints as endpoint_store
from outpost_service.store import tasks as task_store
from tests.e2e.stack import start_service, stop_service

POSTGRES_ADMIN_URL = os.environ.get(
    "OUTPOST_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
)
BACKENDS = ("sqlite", "postgresql")
#: the HTTP calls, in the order of the table
CALLS = (
    "submit 1 task",
    "submit 100 tasks",
    "task status, 1 (GET /v1/tasks/<id>)",
    "task status, 100 (POST /v1/results)",
    "result fetch (Client.get_result)",
    "campaign tasks (GET task_groups/<gid>/tasks, 1,000 tasks)",
    "campaign summary (GET task_groups/<gid>/summary)",
    "campaign status view (outpost tasks group: both)",
    "list endpoints (GET /v1/endpoints)",
)
#: times each in-process store query runs
STORE_REPEATS = 20
#: characters kept of each line of a query plan (long IN lists are cut)
PLAN_WIDTH = 160


@contextmanager
def database(backend: str, folder: Path, number: int) -> Iterator[str]:
    """A new empty database of ``backend``; a PostgreSQL one is dropped afterwards."""
    if backend == "sqlite":
        path = folder / f"store-{number}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    name = f"outpost_bench_{os.getpid()}_{number}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield sa.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def _timed(samples: dict[str, list[float]], name: str, call: Callable[[], Any]) -> None:
    begin = time.perf_counter()
    call()
    samples[name].append((time.perf_counter() - begin) * 1000)


def http_latencies(client: Client, probe: Probe, calls: int, seed: int = 11) -> dict[str, Any]:
    """p50/p95/p99 (ms) of each of :data:`CALLS`, ``calls`` times each, round-robin."""
    rng = random.Random(seed)
    args = b64encode(serialize(((1,), {})))
    group = str(uuid.uuid4())
    task = {
        "function_id": probe.function_id,
        "endpoint_id": probe.endpoint_id,
        "args": args,
        "task_group_id": group,
    }
    samples: dict[str, list[float]] = {name: [] for name in CALLS}

    def view() -> None:
        client.get_task_group(probe.group_id)
        client.task_group_summary(probe.group_id)

    for _ in range(2):  # warm-up: connections, caches, first-call imports
        client.submit_tasks([task])
        client.get_task(probe.group_task_ids[0])
        view()
    for _ in range(calls):
        _timed(samples, CALLS[0], lambda: client.submit_tasks([task]))
        _timed(samples, CALLS[1], lambda: client.submit_tasks([task] * 100))
        _timed(samples, CALLS[2], lambda: client.get_task(rng.choice(probe.group_task_ids)))
        batch = rng.sample(probe.group_task_ids, 100)
        _timed(samples, CALLS[3], functools.partial(client.get_results, batch, wait=0))
        _timed(samples, CALLS[4], lambda: client.get_result(rng.choice(probe.success_ids)))
        _timed(samples, CALLS[5], lambda: client.get_task_group(probe.group_id))
        _timed(samples, CALLS[6], lambda: client.task_group_summary(probe.group_id))
        _timed(samples, CALLS[7], view)
        _timed(samples, CALLS[8], client.list_endpoints)
    return {name: percentiles(values) for name, values in samples.items()}


class _PlanRecorder:
    """Records the SQL a store function runs, so its plan can be asked for afterwards."""

    def __init__(self, engine: sa.Engine) -> None:
        self.statements: list[tuple[str, Any]] = []
        self.on = False
        sa.event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if self.on and statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
            self.statements.append((statement, params))


def _plan(conn: sa.Connection, statement: str, params: Any) -> list[str]:
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).fetchall()
        return [str(row[-1])[:PLAN_WIDTH] for row in rows]
    rows = conn.exec_driver_sql("EXPLAIN " + statement, params).fetchall()
    return [str(row[0])[:PLAN_WIDTH] for row in rows]


def store_queries(url: str, probe: Probe) -> dict[str, Any]:
    """Each store query behind the measured calls and the service's sweeps, timed in-process
    (median and max of :data:`STORE_REPEATS` runs, ms) with its plan."""
    db = Database(url)
    recorder = _PlanRecorder(db.engine)
    with db.read() as conn:
        owner = int(
            conn.exec_driver_sql("SELECT user_id FROM users WHERE name = 'bench'").scalar() or 0
        )
    now = time.time()
    ids = probe.group_task_ids[:100]
    endpoint_ids = [r.endpoint_id for r in _read(db, lambda c: access_store.list_usable(c, owner))]
    queries: dict[str, Callable[[sa.Connection], Any]] = {
        "tasks.get_owned": lambda c: task_store.get_owned(c, ids[0], owner),
        "tasks.events": lambda c: task_store.events(c, ids[0]),
        "tasks.states_owned (100 ids)": lambda c: task_store.states_owned(c, ids, owner),
        "tasks.results (100 ids)": lambda c: task_store.results(c, ids),
        "tasks.by_request": lambda c: task_store.by_request(c, owner, "no-such-request"),
        "tasks.in_group": lambda c: task_store.in_group(c, probe.group_id, owner),
        "tasks.group_outcomes": lambda c: task_store.group_outcomes(c, probe.group_id, owner),
        "access.list_usable": lambda c: access_store.list_usable(c, owner),
        "endpoints.outstanding_counts": lambda c: endpoint_store.outstanding_counts(
            c, endpoint_ids
        ),
        "tasks.outstanding_ids (1 endpoint)": lambda c: task_store.outstanding_ids(
            c, probe.endpoint_id
        ),
        "sweeper: tasks.unpublished": lambda c: task_store.unpublished(c, now - 30, 1000),
        "expiry: tasks.due": lambda c: task_store.due(c, now, 1000),
        "retention: tasks.purge_expired (none due)": lambda c: task_store.purge_expired(c, now),
    }
    out: dict[str, Any] = {}
    for name, query in queries.items():
        times: list[float] = []
        for _ in range(STORE_REPEATS):
            with db.write() as conn:  # write: purge_expired deletes (nothing, here)
                begin = time.perf_counter()
                query(conn)
                times.append((time.perf_counter() - begin) * 1000)
        recorder.on, recorder.statements = True, []
        with db.write() as conn:
            query(conn)
        recorder.on = False
        with db.read() as conn:
            plans = [_plan(conn, sql, params) for sql, params in recorder.statements]
        times.sort()
        out[name] = {"median_ms": times[len(times) // 2], "max_ms": times[-1], "plans": plans}
    out["retention: tasks.purge_expired (one day due)"] = _purge_day(db, now)
    db.dispose()
    return out


def _read(db: Database, query: Callable[[sa.Connection], Any]) -> Any:
    with db.read() as conn:
        return query(conn)


def _purge_day(db: Database, now: float) -> dict[str, Any]:
    """The retention sweep two days from now, when the oldest day of finished tasks is due (as
    after a day without sweeps), batch after batch as the ingest consumer runs it: the total,
    and the longest batch (how long other SQLite writers wait).  Measured last: it deletes."""
    batches: list[float] = []
    deleted = 0
    while True:
        begin = time.perf_counter()
        with db.write() as conn:
            count = task_store.purge_expired(conn, now + 2 * DAY)
        batches.append((time.perf_counter() - begin) * 1000)
        deleted += count
        if count < task_store.PURGE_BATCH:
            break
    return {
        "ms": sum(batches),
        "deleted": deleted,
        "batches": len(batches),
        "longest_batch_ms": max(batches),
    }


def one_store(backend: str, url: str, rows: int, calls: int) -> dict[str, Any]:
    """Fill, serve, measure the calls, stop, time the store queries."""
    probe, stats = fill(url, rows)
    print(
        f"  {backend}: filled {stats.rows:,} task rows, {stats.events:,} events in "
        f"{stats.seconds:.1f} s",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="outpost-store-scale-") as home:
        service = start_service(Path(home), url, user=None, env_extra={"OUTPOST_RATE_LIMIT": "0"})
        service.token = probe.token
        client = Client(url=service.url, token=probe.token)
        try:
            client.register_endpoint(probe.endpoint_name, endpoint_id=probe.endpoint_id)
            service.endpoint_ids.append(probe.endpoint_id)
            http = http_latencies(client, probe, calls)
        finally:
            client.close()
            stop_service(service)
    return {"fill": _fill_dict(stats), "http_ms": http, "store": store_queries(url, probe)}


def _fill_dict(stats: FillStats) -> dict[str, Any]:
    return {
        "task_rows": stats.rows,
        "event_rows": stats.events,
        "seconds": stats.seconds,
        "database_mb": None if stats.database_bytes is None else stats.database_bytes / 2**20,
    }


def measure(rows: int, calls: int, backends: tuple[str, ...] = BACKENDS) -> dict[str, Any]:
    """Empty and full store per backend; ratios full / empty of p50, p95 and p99."""
    out: dict[str, Any] = {"rows": rows, "calls": calls, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="outpost-store-scale-", dir="/tmp") as tmp:
        for number, backend in enumerate(backends):
            result: dict[str, Any] = {}
            for label, size in (("empty", 0), ("full", rows)):
                with database(backend, Path(tmp), 2 * number + (size > 0)) as url:
                    result[label] = one_store(backend, url, size, calls)
            result["ratio_full_to_empty"] = {
                name: {
                    q: result["full"]["http_ms"][name][q] / result["empty"]["http_ms"][name][q]
                    for q in ("p50", "p95", "p99")
                }
                for name in CALLS
            }
            out["backends"][backend] = result
    return out


def report(result: dict[str, Any]) -> None:
    for backend, data in result["backends"].items():
        full, empty, ratio = data["full"], data["empty"], data["ratio_full_to_empty"]
        rows = []
        for name in CALLS:
            f, e, r = full["http_ms"][name], empty["http_ms"][name], ratio[name]
            rows.append(
                (
                    name,
                    f"p50 {f['p50']:.1f} p95 {f['p95']:.1f} p99 {f['p99']:.1f} ms; empty p50 "
                    f"{e['p50']:.1f} p95 {e['p95']:.1f}; full/empty p50 {r['p50']:.2f} p95 "
                    f"{r['p95']:.2f}",
                )
            )
        for name, q in full["store"].items():
            base = empty["store"][name]
            if "median_ms" in q:
                rows.append((name, f"{q['median_ms']:.2f} ms (empty {base['median_ms']:.2f})"))
            else:
                rows.append(
                    (
                        name,
                        f"{q['ms']:.0f} ms, {q['deleted']:,} tasks deleted in {q['batches']} "
                        f"transaction(s), longest {q['longest_batch_ms']:.0f} ms",
                    )
                )
        fill_ = full["fill"]
        rows.append(
            (
                "fill",
                f"{fill_['task_rows']:,} tasks + {fill_['event_rows']:,} events in "
                f"{fill_['seconds']:.0f} s ({fill_['database_mb'] or 0:,.0f} MB)",
            )
        )
        show(f"store scale, {backend}, {result['rows']:,} task rows, {result['calls']} calls", rows)
