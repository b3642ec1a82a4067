"""Benchmark 1, engine alone: Outpost's engine vs Parsl, Dask and Ray, same worker count.

Each run starts every system from scratch in its own process (Outpost in the project venv,
peers in theirs, one after the other so they never compete for the cores), measures cold
start to first result, then the three task mixes on the warm system: no-ops, 10 ms sleeps and
a 1 MB argument.  For Outpost it also reports the CPU time of every engine process per task.
Ratios are Outpost / peer within the same run; their medians are reported.
"""

from __future__ import annotations

import sys
from typing import Any

from benchmarks.common import PEERS, fmt, peer_python, ratios, run_json, run_peer, show, summary
from benchmarks.outpost_engine_runner import available_engines

MIXES = ("noop", "sleep10ms", "arg1mb")


def measure(
    runs: int, workers: int, noop: int, sleep: int, arg: int, peers: list[str]
) -> dict[str, Any]:
    counts = {"noop": noop, "sleep10ms": sleep, "arg1mb": arg}
    mix_args = [a for m in MIXES for a in ("--mix", f"{m}={counts[m]}")]
    common = ["--workers", str(workers), *mix_args]
    systems = [f"outpost-{e}" for e in available_engines()]
    systems += [p for p in peers if peer_python(p) is not None]
    raw: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    for index in range(runs):
        for system in systems:
            timeout = 120 + noop / 100 + sleep / 10 + arg
            if system.startswith("outpost-"):
                engine = system.removeprefix("outpost-")
                argv = [
                    sys.executable,
                    "-m",
                    "benchmarks.outpost_engine_runner",
                    "--engine",
                    engine,
                ]
                raw[system].append(run_json([*argv, *common], timeout))
            else:
                raw[system].append(run_peer(system, common, timeout))
            print(f"  engine run {index + 1}/{runs}: {system} done", flush=True)
    table: dict[str, Any] = {}
    for system, outs in raw.items():
        table[system] = {
            "version": outs[0]["version"],
            "cold_start_s": summary([o["cold_start_s"] for o in outs]),
            **{m: summary([o["mixes"][m]["rate"] for o in outs]) for m in MIXES},
        }
        if all("cpu_ms_per_task" in o["mixes"][m] for o in outs for m in MIXES):
            # Outpost's runner also reports the CPU of every process of the engine per task:
            # the figure to compare changes by on a machine shared with other work
            table[system]["cpu_ms_per_task"] = {
                m: summary([o["mixes"][m]["cpu_ms_per_task"] for o in outs]) for m in MIXES
            }
    compared: dict[str, Any] = {}
    peers_run = [s for s in systems if not s.startswith("outpost-")]
    for ours in (s for s in systems if s.startswith("outpost-")):
        for mix in MIXES:
            mine = table[ours][mix]["runs"]
            for peer in peers_run:
                compared[f"{ours}/{peer}/{mix}"] = ratios(mine, table[peer][mix]["runs"])
            if peers_run:
                fastest = [
                    max(table[p][mix]["runs"][i] for p in peers_run) for i in range(len(mine))
                ]
                compared[f"{ours}/fastest-peer/{mix}"] = ratios(mine, fastest)
    return {
        "workers": workers,
        "tasks": counts,
        "runs": runs,
        "systems": table,
        "ratios": compared,
        "raw": raw,
    }


def report(result: dict[str, Any]) -> None:
    rows = []
    for system, row in result["systems"].items():
        rows.append((f"{system} ({row['version']}) cold start", fmt(row["cold_start_s"], " s", 2)))
        for mix in MIXES:
            rows.append((f"{system} {mix}", fmt(row[mix], " tasks/s")))
            if "cpu_ms_per_task" in row:
                cpu = row["cpu_ms_per_task"][mix]
                rows.append((f"{system} {mix} CPU per task", fmt(cpu, " ms", 3)))
    for key, value in result["ratios"].items():
        rows.append((f"ratio {key}", fmt(value, "x", 2)))
    show(f"engine alone, {result['workers']} workers, tasks {result['tasks']}", rows)


__all__ = ["MIXES", "PEERS", "measure", "report"]
