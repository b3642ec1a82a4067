"""Fixtures for the high-throughput engine tests: real interchange, managers and workers.

Engines run in the test process with the local provider (blocks are process groups on this
machine); ``make_engine`` shuts every engine down at the end of the test, which also kills its
blocks.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from outpost.protocol import ResultEnvelope, TaskEnvelope, deserialize, serialize
from outpost_endpoint.config import parse_config
from outpost_endpoint.engine.high_throughput import HighThroughputEngine

from . import tasks

cloudpickle.register_pickle_by_value(tasks)  # workers need not import the tests package

EngineFactory = Callable[..., HighThroughputEngine]


def envelope(
    fn: Any, *args: Any, spec: dict[str, Any] | None = None, **kwargs: Any
) -> TaskEnvelope:
    return TaskEnvelope(
        task_id=str(uuid.uuid4()),
        function_id="test",
        function=serialize(fn),
        args=serialize((args, kwargs)),
        endpoint_id=str(uuid.uuid4()),
        resource_specification=spec or {},
    )


def value(result: ResultEnvelope) -> Any:
    assert result.error is None, result.error
    assert result.value is not None
    return deserialize(result.value)


def wait_until(predicate: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    """Poll ``predicate`` until it is truthy (a deadline, not a sleep-as-synchronisation)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = predicate()
        if answer:
            return answer
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def make_engine(tmp_path: Path) -> Iterator[EngineFactory]:
    engines: list[HighThroughputEngine] = []

    def make(**engine: Any) -> HighThroughputEngine:
        provider = {"min_blocks": 1, "max_blocks": 1, **engine.pop("provider", {})}
        data = {"type": "high-throughput", "provider": provider, **engine}
        config = parse_config({"engine": data}).engine
        run_dir = tmp_path / f"run{len(engines)}"
        built = HighThroughputEngine(config, run_dir, strategy_period=0.2)
        engines.append(built)
        built.start()
        return built

    yield make
    for built in engines:
        built.shutdown(wait=False)
