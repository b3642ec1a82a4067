"""Fair service: user B's ordinary requests while user A attacks the same service.

A real ``outpost-service serve`` (default settings: 32 request threads, long-poll pool and
per-user cap from longpoll.py, waitress' connection limit and channel timeout from the config).
B sends ``requests`` sequential calls alternating ``GET /v1/endpoints`` (authenticated: a token
lookup and a query) and ``GET /health``, first on a quiet service, then while A holds
``polls`` 60-second result long-polls open (raw sockets, unread) and ``half_sent`` connections
that sent half a request and then nothing (slowloris).  Reported: B's p50/p95/p99 latency in
both phases and how many of A's polls were refused 429.  Target: p99 under load < 100 ms.

Before the fix (no long-poll pool, waitress' default 100 connections), 34 such polls made B's
``GET /v1/endpoints`` take 18.5 s and 105 half-sent requests made ``/health`` time out.
"""

from __future__ import annotations

import base64
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from benchmarks.common import percentiles, show
from outpost.protocol import serialize, serialize_function
from tests.e2e.stack import start_service, stop_service
from tests.service.hostile_clients import hostile_load, status_lines

#: Per-user cap of waiting long-polls (the service's default, config ``longpoll_per_user``).
PER_USER = 16


def _task(url: str, token: str, name: str) -> tuple[str, str]:
    """Register an endpoint and submit one task nobody runs; its (endpoint id, task id)."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"

    def call(path: str, body: Any) -> Any:
        response = session.post(f"{url}{path}", json=body, timeout=60)
        response.raise_for_status()
        return response.json()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    endpoint_id = call("/v1/endpoints", {"name": name})["endpoint_id"]
    function_id = call("/v1/functions", {"function": b64(serialize_function(abs))})["function_id"]
    args = b64(serialize(((1,), {})))
    task = {"function_id": function_id, "endpoint_id": endpoint_id, "args": args}
    (task_id,) = call("/v1/tasks", {"tasks": [task]})["task_ids"]
    return endpoint_id, task_id


def _b_latencies(url: str, token: str, count: int) -> tuple[list[float], int]:
    """``count`` sequential B calls; their latencies (ms) and how many did not answer 200."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    samples: list[float] = []
    failed = 0
    for i in range(count):
        path = "/v1/endpoints" if i % 2 == 0 else "/health"
        start = time.perf_counter()
        try:
            ok = session.get(f"{url}{path}", timeout=60).status_code == 200
        except requests.RequestException:
            ok = False
        samples.append((time.perf_counter() - start) * 1000)
        failed += not ok
    return samples, failed


def measure(count: int = 400, polls: int = 100, half_sent: int = 100) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="outpost-fair-") as tmp:
        home = Path(tmp)
        service = start_service(home, f"sqlite:///{home}/fair.db", user="alice")
        try:
            token_b = service.create_user("bob")
            endpoint_a, task_a = _task(service.url, service.token, "a-ep")
            endpoint_b, _ = _task(service.url, token_b, "b-ep")
            service.endpoint_ids += [endpoint_a, endpoint_b]
            _b_latencies(service.url, token_b, 20)  # warm-up
            quiet, quiet_failed = _b_latencies(service.url, token_b, count)
            hostile = hostile_load(service.url, service.token, [task_a], polls, half_sent)
            try:
                refused = status_lines(hostile.long_polls, polls - PER_USER, timeout=60)
                loaded, loaded_failed = _b_latencies(service.url, token_b, count)
            finally:
                hostile.close()
        finally:
            stop_service(service)
    return {
        "requests": count,
        "hostile_long_polls": polls,
        "hostile_half_sent": half_sent,
        "long_polls_refused_429": sum(a.startswith("HTTP/1.1 429") for a in refused),
        "quiet_ms": percentiles(quiet),
        "quiet_failed": quiet_failed,
        "under_load_ms": percentiles(loaded),
        "under_load_failed": loaded_failed,
        "under_load_max_ms": max(loaded),
    }


def report(result: dict[str, Any]) -> None:
    rows = []
    for phase in ("quiet", "under_load"):
        stats = result[f"{phase}_ms"]
        rows.append(
            (
                f"B {phase.replace('_', ' ')}",
                f"p50 {stats['p50']:.1f} ms  p95 {stats['p95']:.1f} ms  p99 {stats['p99']:.1f} ms"
                f"  ({result[f'{phase}_failed']} of {stats['n']} failed)",
            )
        )
    rows.append(("A's long-polls refused 429", f"{result['long_polls_refused_429']}"))
    show(
        f"fairness: B's requests vs {result['hostile_long_polls']} long-polls + "
        f"{result['hostile_half_sent']} half-sent requests from A",
        rows,
    )


if __name__ == "__main__":
    report(measure())
