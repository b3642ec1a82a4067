"""Outpost's benchmark suite: ``python -m benchmarks [--full] [--only SECTION,...]``.

Sections (see each module): ``engine`` (engine alone vs Parsl/Dask/Ray), ``e2e`` (end to end vs
raw pika), ``latency`` (sequential round trips, Parsl engine-only as reference), ``cold``
(``outpost-endpoint start`` to first result), ``scale`` (N tasks queued while the endpoint is
stopped) and ``store`` (submit/status latency with N task rows in the store, SQLite and
PostgreSQL) and ``fair`` (one user's ordinary requests while another holds 100 long-polls and
100 half-sent requests open) and ``wake`` (result latency single- vs cross-process, 1,000
waiting long-polls on one API process).  Defaults are sized for a few minutes on a shared 2-core
machine; ``--full`` uses the issue's sizes (20,000 no-ops, 100,000 queued, 1,000,000 task
rows).  Every figure is printed and written to ``benchmarks/results/<section>.json``.  Peers
come from ``benchmarks/setup_peers.sh``; a peer without a venv is skipped (and said so).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from benchmarks import (
    cold_start,
    end_to_end,
    engine_alone,
    fairness,
    latency,
    scale,
    store_scale,
    wakeups,
)
from benchmarks.common import PEERS, machine, peer_python, write

SECTIONS = ("engine", "e2e", "latency", "cold", "scale", "store", "fair", "wake")
QUICK = {"noop": 2000, "sleep": 200, "arg": 20, "e2e": 1000, "trips": 500, "scale": 5000}
FULL = {"noop": 20000, "sleep": 1000, "arg": 200, "e2e": 20000, "trips": 500, "scale": 100000}
QUICK["store"], FULL["store"] = 100_000, 1_000_000  # task rows in the store


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--full", action="store_true", help="the issue's sizes (long)")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median reported)")
    parser.add_argument("--workers", type=int, default=2, help="workers for engine-alone")
    parser.add_argument("--peers", default=",".join(PEERS), help="peers to compare against")
    parser.add_argument("--engine-tasks", type=int, help="no-op tasks per engine-alone run")
    parser.add_argument("--e2e-tasks", type=int, help="no-op tasks per end-to-end run")
    parser.add_argument(
        "--e2e-engine",
        choices=("high-throughput", "process-pool"),
        help="the endpoint's engine for `e2e` [default: the configure template's, "
        "high-throughput]; results of another engine go to end_to_end_<engine>.json",
    )
    parser.add_argument(
        "--e2e-prefetch-capacity",
        type=int,
        help="the high-throughput engine's prefetch_capacity for `e2e` [default: the "
        "template's, 0]; results go to end_to_end_prefetch<N>.json",
    )
    parser.add_argument("--round-trips", type=int, help="sequential round trips per run")
    parser.add_argument("--scale-tasks", type=int, help="tasks queued for the scale run")
    parser.add_argument("--scale-runs", type=int, default=1, help="runs of the scale benchmark")
    parser.add_argument("--store-rows", type=int, help="task rows in the store for `store`")
    parser.add_argument("--store-calls", type=int, default=200, help="calls of each kind, `store`")
    parser.add_argument(
        "--store-backends",
        default=",".join(store_scale.BACKENDS),
        help="comma-separated store backends for `store`",
    )
    parser.add_argument(
        "--fair-requests", type=int, default=400, help="B's requests per phase, `fair`"
    )
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"--only: unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")
    bad = set(args.peers.split(",")) - set(PEERS) - {""}
    if bad:
        parser.error(f"--peers: unknown peer(s) {sorted(bad)}; choose from {PEERS}")
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    bad = set(args.store_backends.split(",")) - set(store_scale.BACKENDS)
    if bad:
        parser.error(f"--store-backends: unknown {sorted(bad)}; choose from {store_scale.BACKENDS}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    sizes = dict(FULL if args.full else QUICK)
    for key, flag in (("noop", "engine_tasks"), ("e2e", "e2e_tasks"), ("trips", "round_trips")):
        if getattr(args, flag):
            sizes[key] = getattr(args, flag)
    if args.scale_tasks:
        sizes["scale"] = args.scale_tasks
    if args.store_rows is not None:
        sizes["store"] = args.store_rows
    only = args.only.split(",")
    peers = [p for p in args.peers.split(",") if p]
    missing = [p for p in peers if peer_python(p) is None]
    if missing:
        print(f"no venv for {missing}: run benchmarks/setup_peers.sh; comparing without them")
    results: dict[str, Any] = {"machine": machine(), "sizes": sizes, "runs": args.runs}
    engine: dict[str, Any] | None = None
    if "engine" in only:
        engine = engine_alone.measure(
            args.runs, args.workers, sizes["noop"], sizes["sleep"], sizes["arg"], peers
        )
        engine_alone.report(engine)
        write("engine_alone", {"machine": results["machine"], **engine})
    if "e2e" in only:
        prefetch = args.e2e_prefetch_capacity
        e2e = end_to_end.measure(
            args.runs, sizes["e2e"], engine=args.e2e_engine, prefetch_capacity=prefetch
        )
        end_to_end.report(e2e)
        suffix = f"_{args.e2e_engine.replace('-', '_')}" if args.e2e_engine else ""
        suffix += f"_prefetch{prefetch}" if prefetch is not None else ""
        write(f"end_to_end{suffix}", {"machine": results["machine"], **e2e})
    if "latency" in only:
        lat = latency.measure(args.runs, sizes["trips"], args.workers)
        latency.report(lat)
        write("latency", {"machine": results["machine"], **lat})
    if "cold" in only:
        cold = cold_start.measure(args.runs)
        cold_start.report(cold, engine)
        write("cold_start", {"machine": results["machine"], **cold})
    if "scale" in only:
        big = scale.measure(args.scale_runs, sizes["scale"])
        scale.report(big)
        write("scale", {"machine": results["machine"], **big})
    if "store" in only:
        backends = tuple(b for b in args.store_backends.split(",") if b)
        store = store_scale.measure(sizes["store"], args.store_calls, backends)
        store_scale.report(store)
        write("store_scale", {"machine": results["machine"], **store})
    if "fair" in only:
        fair = fairness.measure(args.fair_requests)
        fairness.report(fair)
        write("fairness", {"machine": results["machine"], **fair})
    if "wake" in only:
        wake = wakeups.measure()
        wakeups.report(wake)
        write("wakeups", {"machine": results["machine"], **wake})


if __name__ == "__main__":
    main()
