"""Many endpoints: 1,000 simulated endpoints registered, connected and heartbeating against one
service and one broker, with a real client's submit/result latency measured alongside.

``python -m benchmarks.many_endpoints [--endpoints 1000] [--round-trips 300]``

One run, in order, on a private RabbitMQ node (management plugin: per-endpoint broker users,
as deployed; its CPU and memory are then this benchmark's alone) and one ``outpost-service
serve`` (API + ingest in one process, SQLite, no per-token rate limit):

1. a real endpoint (``outpost-endpoint start``, local provider) and a real SDK client: N
   sequential single-task round trips, timing the submit (``POST /v1/tasks``, answered after
   commit + publisher confirms) and the result (submit answered → result in hand, by
   long-poll) -- the *quiet* figures;
2. ``--endpoints`` endpoints registered over HTTP (``POST /v1/endpoints``, 8 at a time, each
   gets its own broker user), then connected and heartbeating by
   :mod:`benchmarks.sim_endpoints` (4 processes; two AMQP connections per endpoint, as the
   real one has; heartbeats every ``heartbeat_interval`` = 10 s);
3. once all are online, the same N round trips again, while the CPU (``/proc``, % of one
   core over the phase) and memory (RSS) of the service, the broker and the simulators are
   read.

Figures go to ``benchmarks/results/many_endpoints.json`` and are printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import machine, percentiles, show, write
from benchmarks.local_stack import cpu_seconds, rss_mb
from benchmarks.peer_runner import noop
from outpost import Client
from outpost.protocol import serialize
from outpost.protocol.envelopes import b64encode
from tests.durability.conftest import PrivateBroker
from tests.e2e.stack import make_endpoint, start_service
from tests.recipes import private_broker_port

SIMULATORS = 4


def round_trips(client: Client, endpoint_id: str, count: int) -> dict[str, Any]:
    """``count`` sequential single tasks: submit and result latencies (ms)."""
    function_id = client.register_function(noop)
    submit_ms, result_ms = [], []
    args = b64encode(serialize(((), {})))
    for _ in range(count):
        start = time.perf_counter()
        [task_id] = client.submit_tasks(
            [{"function_id": function_id, "endpoint_id": endpoint_id, "args": args}]
        )
        submitted = time.perf_counter()
        while True:
            results, _pending = client.poll_results([task_id], wait=30)
            if results:
                break
        done = time.perf_counter()
        result = results[0]
        assert result["state"] == "success", result
        submit_ms.append((submitted - start) * 1000)
        result_ms.append((done - submitted) * 1000)
    both = [s + r for s, r in zip(submit_ms, result_ms, strict=True)]
    return {
        "submit_ms": percentiles(submit_ms),
        "result_ms": percentiles(result_ms),
        "round_trip_ms": percentiles(both),
    }


def register(url: str, token: str, count: int) -> list[dict[str, Any]]:
    def one(i: int) -> dict[str, Any]:
        client = Client(url=url, token=token, retries=5)
        try:
            return client.register_endpoint(f"sim-{i:05d}")
        finally:
            client.close()

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def online(client: Client) -> int:
    return sum(1 for e in client.list_endpoints() if e["state"] == "online")


def usage(pids: dict[str, list[int]], seconds: float, before: dict[str, float]) -> dict[str, Any]:
    out = {}
    for role, members in pids.items():
        cpu = sum(cpu_seconds(p) for p in members) - before[role]
        out[role] = {
            "cpu_percent_of_one_core": round(100 * cpu / seconds, 1),
            "rss_mb": round(sum(rss_mb(p) or 0 for p in members), 1),
        }
    return out


def measure(endpoints: int, trips: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="outpost-many-") as tmp:
        home = Path(tmp)
        broker = PrivateBroker(home / "rabbitmq", private_broker_port(), management=True)
        broker.do("start")
        service = None
        sims: list[subprocess.Popen[str]] = []
        try:
            service = start_service(
                home,
                f"sqlite:///{home}/outpost.db",
                amqp_url=broker.url,
                env_extra={"OUTPOST_RATE_LIMIT": "0"},
            )
            real = make_endpoint(service, home / "endpoint", "real")
            client = Client(url=service.url, token=service.token)
            round_trips(client, real.endpoint_id, 20)  # warm up
            quiet = round_trips(client, real.endpoint_id, trips)
            print(f"  quiet: {quiet}", flush=True)

            started = time.monotonic()
            registrations = register(service.url, service.token, endpoints)
            registered_s = time.monotonic() - started
            service.endpoint_ids += [r["endpoint_id"] for r in registrations]
            per = -(-endpoints // SIMULATORS)
            for index in range(SIMULATORS):
                path = home / f"sim-{index}.json"
                path.write_text(json.dumps(registrations[index * per : (index + 1) * per]))
                sims.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "benchmarks.sim_endpoints", str(path)],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                    )
                )
            for sim in sims:
                assert sim.stdout is not None
                line = sim.stdout.readline()
                assert line.startswith("connected"), line
            connected_s = time.monotonic() - started
            deadline = time.monotonic() + 120
            while online(client) < endpoints + 1:
                assert time.monotonic() < deadline, f"only {online(client)} online"
                time.sleep(0.5)
            online_s = time.monotonic() - started

            pids = {
                "service": [service.process.pid],
                "rabbitmq": [broker.pid()],
                "simulators": [s.pid for s in sims],
            }
            before = {role: sum(cpu_seconds(p) for p in m) for role, m in pids.items()}
            phase = time.monotonic()
            loaded = round_trips(client, real.endpoint_id, trips)
            elapsed = time.monotonic() - phase
            resources = usage(pids, elapsed, before)
            still_online = online(client)
            client.close()
            real.run("stop", real.name, check=False)
            return {
                "endpoints": endpoints,
                "round_trips": trips,
                "quiet": quiet,
                "with_endpoints": loaded,
                "registered_s": round(registered_s, 1),
                "connected_s": round(connected_s, 1),
                "all_online_s": round(online_s, 1),
                "online_after": still_online,
                "phase_s": round(elapsed, 1),
                "resources": resources,
                "amqp_connections": 2 * endpoints + 2,
                "heartbeats_per_s": round(endpoints / 10.0, 1),
            }
        finally:
            for sim in sims:
                sim.terminate()
            for sim in sims:
                try:
                    sim.wait(20)
                except subprocess.TimeoutExpired:
                    sim.kill()
            if service is not None:
                service.process.terminate()
                service.process.wait(30)
            broker.do("kill")


def report(result: dict[str, Any]) -> None:
    rows = []
    for phase in ("quiet", "with_endpoints"):
        for what in ("submit_ms", "result_ms", "round_trip_ms"):
            q = result[phase][what]
            rows.append((f"{phase} {what}", f"p50 {q['p50']:.1f} / p99 {q['p99']:.1f} ms"))
    for role, figures in result["resources"].items():
        rows.append((role, f"{figures['cpu_percent_of_one_core']}% CPU, {figures['rss_mb']} MB"))
    rows.append(("registered / connected / online", f"{result['registered_s']} / "
                 f"{result['connected_s']} / {result['all_online_s']} s"))  # fmt: skip
    show(f"{result['endpoints']} simulated endpoints, {result['round_trips']} round trips", rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.many_endpoints")
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--round-trips", type=int, default=300)
    args = parser.parse_args()
    result = measure(args.endpoints, args.round_trips)
    result["machine"] = machine()
    write("many_endpoints", result)
    report(result)


if __name__ == "__main__":
    main()
