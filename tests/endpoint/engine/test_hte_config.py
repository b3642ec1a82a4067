"""The engine section of config.yaml for the high-throughput engine: values and clear errors."""

from __future__ import annotations

import pytest

from outpost_endpoint.config import EngineConfig, parse_config
from outpost_endpoint.errors import ConfigError


def engine(**values: object) -> EngineConfig:
    return parse_config({"engine": {"type": "high-throughput", **values}}).engine


def test_accelerators_as_count_or_list() -> None:
    assert engine(available_accelerators=4).available_accelerators == ["0", "1", "2", "3"]
    assert engine(available_accelerators=["0.0", 1]).available_accelerators == ["0.0", "1"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cpu_affinity": "sideways"}, "engine.cpu_affinity: 'sideways' is not one of"),
        ({"cpu_affinity": "list:0-a"}, "engine.cpu_affinity: 'list:0-a' is not a core list"),
        ({"accelerator_variable": "GPU"}, "engine.accelerator_variable: 'GPU' is not one of"),
        ({"available_accelerators": -1}, "engine.available_accelerators: -1 is negative"),
        ({"max_retries": -1}, "engine.max_retries: -1 is too small"),
        ({"parallelism": 2}, "engine.parallelism: 2 is not a fraction"),
        ({"heartbeat_period": 5, "heartbeat_threshold": 5}, "must be larger than heartbeat_period"),
        ({"max_idletime": "soon"}, "engine.max_idletime: 'soon' is not a number"),
    ],
)
def test_bad_values_name_the_field_and_value(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        engine(**values)


def test_amqp_prefetch_covers_every_worker_of_every_block() -> None:
    config = parse_config(
        {
            "engine": {
                "type": "high-throughput",
                "available_accelerators": 4,
                "provider": {"max_blocks": 10, "nodes_per_block": 2},
            }
        }
    )
    assert config.engine.slots == 80
    assert config.prefetch_count == 162
    assert parse_config({"engine": {"max_workers": 3}}).prefetch_count == 64  # MIN_PREFETCH
    assert parse_config({"engine": {"max_workers": 40}}).prefetch_count == 82
