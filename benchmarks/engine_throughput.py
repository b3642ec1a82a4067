"""The high-throughput engine alone vs Parsl's HighThroughputExecutor: no-op rate and cold start.

``python -m benchmarks.engine_throughput [--tasks 20000] [--workers 2] [--runs 1]``

Both run on this machine with the local provider and the same worker count, one after the other
in the same invocation (so they see the same machine load), each in a fresh process: Outpost
through :mod:`benchmarks.outpost_engine_runner`, Parsl in its own venv
(``benchmarks/setup_peers.sh parsl``) through :mod:`benchmarks.peer_runner`.  Prints both rates,
the ratio and both cold starts (engine start → first result).  The full benchmark suite
(``python -m benchmarks --only engine``) runs more mixes and peers; this is the issue's figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from benchmarks.common import HERE, outpost_python, peer_python, run_json, run_peer


def one_round(tasks: int, workers: int) -> dict[str, Any]:
    mix = ["--workers", str(workers), "--mix", f"noop={tasks}"]
    runner = str(HERE / "outpost_engine_runner.py")
    ours = run_json([outpost_python(), runner, "--engine", "high-throughput", *mix], timeout=1800)
    theirs = run_peer("parsl", mix, timeout=1800) if peer_python("parsl") else None
    return {"outpost": ours, "parsl": theirs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    rounds = [one_round(args.tasks, args.workers) for _ in range(args.runs)]
    ours = [r["outpost"]["mixes"]["noop"]["rate"] for r in rounds]
    cold = [r["outpost"]["cold_start_s"] for r in rounds]
    cpu = [r["outpost"]["mixes"]["noop"].get("cpu_ms_per_task", float("nan")) for r in rounds]
    report: dict[str, Any] = {
        "tasks": args.tasks,
        "workers": args.workers,
        "outpost_rate": statistics.median(ours),
        "outpost_cold_start_s": statistics.median(cold),
        "outpost_cpu_ms_per_task": statistics.median(cpu),
    }
    if all(r["parsl"] for r in rounds):
        theirs = [r["parsl"]["mixes"]["noop"]["rate"] for r in rounds]
        report["parsl_rate"] = statistics.median(theirs)
        report["parsl_cold_start_s"] = statistics.median(r["parsl"]["cold_start_s"] for r in rounds)
        report["ratio"] = statistics.median(o / t for o, t in zip(ours, theirs, strict=True))
    else:
        report["parsl"] = "skipped: no Parsl venv; run benchmarks/setup_peers.sh parsl"
    print(
        f"outpost high-throughput: {report['outpost_rate']:.0f} tasks/s, cold start "
        f"{report['outpost_cold_start_s']:.2f} s, {report['outpost_cpu_ms_per_task']:.3f} ms CPU "
        "per task (all engine processes)"
    )
    if "ratio" in report:
        print(
            f"parsl HTEX:              {report['parsl_rate']:.0f} tasks/s, cold start "
            f"{report['parsl_cold_start_s']:.2f} s\nratio (outpost/parsl):   {report['ratio']:.2f}x"
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
