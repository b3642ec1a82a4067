"""GPU pinning check for the high-throughput engine, for a machine with real GPUs.

Starts the engine in this process with the local provider and ``available_accelerators`` =
the number of GPUs ``nvidia-smi -L`` lists (2 fake ids when there is no nvidia-smi), holds
one task per worker at once (so every worker answers), and has each report the
``CUDA_VISIBLE_DEVICES`` it saw, its CPU affinity, ``nvidia-smi -L`` as run by the worker and
``torch.cuda.device_count()`` / the device's UUID when torch is importable.  Prints a JSON report
and exits 1 if two workers saw the same device (or a worker saw none or several).  Needs neither
the service nor RabbitMQ.

    python benchmarks/gpu_pinning_check.py [--affinity alternating] [--timeout 300]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
for folder in ("sdk", "endpoint"):  # runnable from a plain checkout, without installing
    if str(HERE / folder) not in sys.path:
        sys.path.insert(0, str(HERE / folder))
# ...and so are the managers and workers the engine starts as new processes
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(HERE / "sdk"), str(HERE / "endpoint"), *filter(None, [os.environ.get("PYTHONPATH")])]
)

import cloudpickle  # noqa: E402

from outpost.protocol import TaskEnvelope, deserialize, serialize  # noqa: E402
from outpost_endpoint.config import parse_config  # noqa: E402
from outpost_endpoint.engine.high_throughput import HighThroughputEngine  # noqa: E402


def gpus_on_this_machine() -> tuple[int, str]:
    if shutil.which("nvidia-smi") is None:
        return 2, "no nvidia-smi: 2 fake device ids"
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    count = sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))
    if count == 0:
        return 2, f"nvidia-smi -L listed no GPU ({listing.stderr.strip()}): 2 fake device ids"
    return count, listing.stdout.strip()


def report_from_worker(gate: str, started: str) -> dict[str, Any]:
    """Runs in a worker: wait until every worker holds a task, then describe what it sees."""
    import os
    import shutil
    import subprocess
    import time
    from pathlib import Path

    Path(started).write_text(str(os.getpid()))
    while not Path(gate).exists():
        time.sleep(0.05)
    seen: dict[str, Any] = {
        "pid": os.getpid(),
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "affinity": sorted(os.sched_getaffinity(0)),
    }
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
        seen["nvidia_smi"] = out.stdout.strip().splitlines()
    try:
        import torch

        seen["torch_device_count"] = torch.cuda.device_count()
        if torch.cuda.device_count():
            props = torch.cuda.get_device_properties(0)
            seen["torch_device"] = {"name": props.name, "uuid": str(getattr(props, "uuid", ""))}
    except Exception as exc:  # no torch, or no usable CUDA: report why
        seen["torch"] = repr(exc)
    return seen


def envelope(fn: Any, *args: Any) -> TaskEnvelope:
    return TaskEnvelope(
        task_id=str(uuid.uuid4()),
        function_id="gpu-check",
        function=serialize(fn),
        args=serialize((args, {})),
        endpoint_id="gpu-check",
    )


def identity(report: dict[str, Any]) -> list[str]:
    """What identifies the device(s) a worker saw: torch's UUID, else nvidia-smi's lines,
    else the variable."""
    if report.get("torch_device", {}).get("uuid"):
        return [report["torch_device"]["uuid"]]
    if report.get("nvidia_smi"):
        return list(report["nvidia_smi"])
    return [report.get("CUDA_VISIBLE_DEVICES") or ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--affinity", default="alternating")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    count, listing = gpus_on_this_machine()
    config = parse_config(
        {
            "engine": {
                "type": "high-throughput",
                "available_accelerators": count,
                "cpu_affinity": args.affinity,
                "provider": {"type": "local", "min_blocks": 1, "max_blocks": 1},
            }
        }
    ).engine
    work = Path(tempfile.mkdtemp(prefix="outpost-gpu-check-"))
    started_at = time.monotonic()
    engine = HighThroughputEngine(config, work / "run", strategy_period=0.2)
    engine.start()
    try:
        gate = work / "gate"
        flags = [work / f"started-{i}" for i in range(count)]
        futures = [engine.submit(envelope(report_from_worker, str(gate), str(f))) for f in flags]
        deadline = time.monotonic() + args.timeout
        while not all(f.exists() for f in flags):
            if time.monotonic() > deadline:
                raise SystemExit(f"not every worker started a task within {args.timeout} s")
            time.sleep(0.05)
        gate.touch()
        results = [f.result(args.timeout) for f in futures]
    finally:
        engine.shutdown(wait=False)
    reports = []
    problems = []
    for result in results:
        if result.error is not None:
            problems.append(f"task failed: {result.error.reason}: {result.error.message}")
            continue
        reports.append(deserialize(result.value))
    devices = [r.get("CUDA_VISIBLE_DEVICES") for r in reports]
    if len(set(devices)) != len(devices):
        problems.append(f"two workers saw the same CUDA_VISIBLE_DEVICES: {devices}")
    for r in reports:
        if r.get("CUDA_VISIBLE_DEVICES") in (None, "") or "," in str(r.get("CUDA_VISIBLE_DEVICES")):
            problems.append(f"worker {r['pid']} did not see exactly one device: {r}")
        if "torch_device_count" in r and count > 1 and r["torch_device_count"] != 1:
            problems.append(f"worker {r['pid']}: torch saw {r['torch_device_count']} devices")
    ids = [tuple(identity(r)) for r in reports]
    if len(set(ids)) != len(ids):
        problems.append(f"two workers saw the same physical device: {ids}")
    print(
        json.dumps(
            {
                "gpus": count,
                "host_listing": listing,
                "cpu_affinity": args.affinity,
                "cores_here": sorted(os.sched_getaffinity(0)),
                "seconds": round(time.monotonic() - started_at, 2),
                "workers": reports,
                "ok": not problems,
                "problems": problems,
            },
            indent=2,
        )
    )
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
