"""Encode and decode of the hot-path envelopes: the hand-written dataclasses against the pydantic
models that replaced them, in the same run.

    .venv/bin/python -m benchmarks.schema_choice [--rounds 50000] [--repeats 3] [--baseline REV]

The baseline is ``sdk/outpost/protocol/envelopes.py`` as it was at ``REV`` (default: the last
commit with the hand-written envelopes), loaded from git into a module of its own.  Timed per
message, best of ``--repeats``: a typical TaskEnvelope (a small pickled function and argument
tuple, signed) and ResultEnvelope (a small value, timing) through the calls the hot paths make:
``to_bytes`` (service publish, endpoint result publish), ``decode_message(bytes)`` (ingest,
worker), ``decode_message(dict)`` (the endpoint's consumer parses once for the signature check),
``to_dict`` (the signer), the engine's frame header and the task rebuilt from it (``trusted``;
``model_construct`` beside it for comparison), and a result built by its constructor (which
validates) as the engine's workers do.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from outpost.protocol import envelopes, serialize, serialize_function

ROOT = Path(__file__).resolve().parent.parent
#: The last commit whose envelopes were hand-written dataclasses.
HAND_WRITTEN = "61375e7"


def baseline(rev: str) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{rev}:sdk/outpost/protocol/envelopes.py"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    spec = importlib.util.spec_from_loader("baseline_envelopes", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:envelopes.py", "exec"), module.__dict__)
    return module


def messages(module: Any) -> tuple[Any, Any]:
    task = module.TaskEnvelope(
        task_id="3f1c8a52-7b0e-4f43-9d6e-2a0c5b1e8d77",
        function_id="9" * 64,
        function=serialize_function(abs),
        args=serialize(((-1,), {})),
        endpoint_id="5d2b7e1a-0c4f-4b8e-a9d3-6f1e2c7b8a90",
        task_group_id="8c6e2f4a-1d3b-4e5f-9a7c-0b2d4f6e8a1c",
        resource_specification={"walltime": 60},
        submitter="owner",
        issued_at=time.time(),
        sig="A" * 88,
    )
    result = module.ResultEnvelope(
        task_id=task.task_id,
        endpoint_id=task.endpoint_id,
        state=module.TaskState.SUCCESS,
        value=serialize(1),
        timing={"received": 1.0, "started": 2.0, "finished": 3.0},
        node="nid001234",
        worker="nid001234:0",
    )
    return task, result


def best_us(call: Callable[[], object], rounds: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(rounds):
            call()
        best = min(best, time.perf_counter() - started)
    return best / rounds * 1e6


def cases(module: Any) -> dict[str, Callable[[], object]]:
    """The timed calls on ``module``'s envelopes (the old module or the new one)."""
    task, result = messages(module)
    task_bytes, result_bytes = task.to_bytes(), result.to_bytes()
    task_dict, result_dict = task.to_dict(), result.to_dict()
    new = module is envelopes
    header = task.header() if new else old_header(task)
    state = module.TaskState.SUCCESS
    return {
        "task to_bytes": task.to_bytes,
        "task to_dict": task.to_dict,
        "task decode(bytes)": lambda: module.decode_message(task_bytes),
        "task decode(dict)": lambda: module.decode_message(task_dict),
        "task header": task.header if new else lambda: old_header(task),
        "task from header": (
            (lambda: module.TaskEnvelope.trusted({**header, "function": b"f", "args": b"a"}))
            if new
            else lambda: module.TaskEnvelope(**header, function=b"f", args=b"a")
        ),
        "result to_bytes": result.to_bytes,
        "result decode(bytes)": lambda: module.decode_message(result_bytes),
        "result decode(dict)": lambda: module.decode_message(result_dict),
        "result construct": lambda: module.ResultEnvelope(
            task_id="t", endpoint_id="e", state=state, value=b"v", timing={"a": 1.0}
        ),
    }


def old_header(task: Any) -> dict[str, Any]:
    """What the engine's wire module spelled by hand before :meth:`header` existed."""
    return {
        "task_id": task.task_id,
        "function_id": task.function_id,
        "endpoint_id": task.endpoint_id,
        "task_group_id": task.task_group_id,
        "resource_specification": task.resource_specification,
        "created_at": task.created_at,
        "submitter": task.submitter,
        "issued_at": task.issued_at,
        "sig": task.sig,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default=HAND_WRITTEN, help="git revision of the old code")
    options = parser.parse_args(argv)
    old, new = cases(baseline(options.baseline)), cases(envelopes)
    task, _ = messages(envelopes)
    header = task.header()
    new["(task model_construct)"] = lambda: envelopes.TaskEnvelope.model_construct(
        **header, function=b"f", args=b"a"
    )
    old["(task model_construct)"] = old["task from header"]
    print(f"{'µs per message':<24}{'hand-written':>13}{'pydantic':>10}{'new/old':>9}")
    for name in new:
        before = best_us(old[name], options.rounds, options.repeats)
        after = best_us(new[name], options.rounds, options.repeats)
        print(f"{name:<24}{before:>13.2f}{after:>10.2f}{after / before:>9.2f}")


if __name__ == "__main__":
    main()
