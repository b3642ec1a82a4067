"""What every benchmark section shares: statistics, ratios, peer runners and result files.

The machines these run on are shared and noisy, so a figure is always the median of several
runs with its spread (min, max and every run), and a comparison is a ratio measured *within*
one run (Outpost and the peer back to back), whose median is reported.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
VENVS = HERE / ".venvs"
PEERS = ("parsl", "dask", "ray")
AMQP_URL = os.environ.get("OUTPOST_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def summary(values: list[float]) -> dict[str, Any]:
    """Median, min, max and the runs themselves."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": values,
    }


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "n": len(ordered)}


def ratios(ours: list[float], theirs: list[float]) -> dict[str, Any]:
    """Per-run ratios ours/theirs (runs paired in order) and their median."""
    paired = [a / b for a, b in zip(ours, theirs, strict=False) if b]
    return summary(paired) if paired else {"median": None, "runs": []}


def machine() -> dict[str, Any]:
    """Where and when the figures were taken."""
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": os.getloadavg(),
    }


def peer_python(peer: str) -> Path | None:
    """The interpreter of a peer's venv (``benchmarks/setup_peers.sh`` makes them), if any."""
    python = VENVS / peer / "bin" / "python"
    return python if python.exists() else None


def run_json(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a runner script; return the JSON object on its last stdout line."""
    full_env = dict(os.environ, **(env or {}))
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    run = subprocess.run(
        argv, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    if run.returncode != 0 or not lines:
        raise RuntimeError(
            f"{' '.join(argv)} exited {run.returncode}:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
        )
    return dict(json.loads(lines[-1]))


def run_peer(peer: str, args: list[str], timeout: float) -> dict[str, Any]:
    """One round of :mod:`benchmarks.peer_runner` in ``peer``'s venv."""
    python = peer_python(peer)
    if python is None:
        raise RuntimeError(f"no venv for {peer}: run benchmarks/setup_peers.sh {peer}")
    # Parsl starts its interchange and worker pool as scripts found on PATH.
    env = {"PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return run_json([str(python), str(HERE / "peer_runner.py"), peer, *args], timeout, env)


def outpost_python() -> str:
    return sys.executable


def write(name: str, data: dict[str, Any]) -> Path:
    """Write ``results/NAME.json`` atomically (``*.tmp`` is gitignored)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    return path


def show(title: str, rows: list[tuple[str, str]]) -> None:
    """Print a small two-column block."""
    print(f"\n== {title}")
    width = max((len(k) for k, _ in rows), default=0)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    sys.stdout.flush()


def fmt(stats: dict[str, Any], unit: str = "", digits: int = 0) -> str:
    """``median (min-max)`` of a summary."""
    if stats.get("median") is None:
        return "n/a"
    return (
        f"{stats['median']:,.{digits}f}{unit} "
        f"({stats['min']:,.{digits}f}-{stats['max']:,.{digits}f}, n={len(stats['runs'])})"
    )
