"""config.yaml validation: every bad field is named, with the bad value and what is allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from outpost.errors import ConfigurationError
from outpost_endpoint.config import MIN_PREFETCH, EndpointConfig, load_config, parse_config
from outpost_endpoint.engine import ProcessPoolEngine, build_engine
from outpost_endpoint.errors import ConfigError

TEMPLATES = Path(__file__).parents[2] / "endpoint" / "outpost_endpoint" / "config_templates"


def error_for(data: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


def test_empty_config_gets_defaults() -> None:
    config = parse_config({})
    assert config == EndpointConfig()
    assert config.engine.type == "process-pool"
    assert config.engine.max_workers >= 1
    assert config.prefetch_count == max(2 * config.engine.max_workers + 2, MIN_PREFETCH)


def test_every_template_is_valid() -> None:
    for template in TEMPLATES.glob("*.yaml"):
        load_config(template)


def test_full_high_throughput_section_is_accepted() -> None:
    config = parse_config(
        {
            "service_url": "https://outpost.example.org/",
            "amqp_url": "amqp://u:p@rabbit:5672/",
            "heartbeat_interval": 10,
            "prefetch": 16,
            "engine": {
                "type": "high-throughput",
                "max_workers_per_node": 4,
                "available_accelerators": 4,
                "cpu_affinity": "alternating",
                "prefetch_capacity": 0,
                "provider": {
                    "type": "pbspro",
                    "account": "datascience",
                    "queue": "debug",
                    "walltime": "00:10:00",
                    "select_options": "ngpus=4",
                    "scheduler_options": "#PBS -l filesystems=home:eagle",
                    "worker_init": "source /env",
                    "nodes_per_block": 1,
                    "min_blocks": 0,
                    "max_blocks": 1,
                    "cpus_per_node": 64,
                    "launcher": {"type": "mpiexec", "bind_cmd": "--cpu-bind", "overrides": "-d 64"},
                },
            },
        }
    )
    assert config.service_url == "https://outpost.example.org"
    assert config.engine.available_accelerators == ["0", "1", "2", "3"]
    assert config.engine.provider.launcher.type == "mpiexec"
    assert config.prefetch_count == 16


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"engine": {"type": "foo"}},
            "engine.type: 'foo' is not one of: process-pool, high-throughput",
        ),
        ({"engine": {"max_workers": 0}}, "engine.max_workers: 0 is too small"),
        ({"engine": {"max_workers": "four"}}, "engine.max_workers: 'four' is not an integer"),
        (
            {"engine": {"cpu_affinity": "spread"}},
            "engine.cpu_affinity: 'spread' is not one of: none, block",
        ),
        ({"engine": {"available_accelerators": -1}}, "engine.available_accelerators: -1"),
        (
            {"engine": {"provider": {"type": "lsf"}}},
            "engine.provider.type: 'lsf' is not one of: local, pbspro, slurm",
        ),
        (
            {"engine": {"provider": {"walltime": "10m"}}},
            "engine.provider.walltime: '10m' is not a walltime",
        ),
        (
            {"engine": {"provider": {"min_blocks": 2, "max_blocks": 1}}},
            "engine.provider.min_blocks: 2 is larger",
        ),
        (
            {"engine": {"provider": {"launcher": {"type": "mpirun"}}}},
            "engine.provider.launcher.type: 'mpirun' is not one of: simple, single, mpiexec, "
            "srun, aprun",
        ),
        ({"service_url": "ftp://x"}, "service_url: 'ftp://x' is not a URL"),
        (
            {"amqp_url": "http://x"},
            "amqp_url: 'http://x' is not a URL starting with one of: amqp://",
        ),
        ({"heartbeat_interval": "often"}, "heartbeat_interval: 'often' is not a number"),
        ({"prefetch": 0}, "prefetch: 0 is too small"),
        ({"engine": "process-pool"}, "engine: must be a mapping"),
    ],
)
def test_bad_values_name_field_value_and_allowed(data: dict[str, Any], expected: str) -> None:
    assert expected in error_for(data)


def test_unknown_keys_are_named_with_the_allowed_keys() -> None:
    message = error_for({"max_worker": 2, "engine": {"provider": {"qeue": "debug"}}})
    assert "max_worker: unknown key; allowed keys: service_url, amqp_url" in message
    assert "engine.provider.qeue: unknown key; allowed keys: type, account, queue" in message


def test_all_problems_are_reported_at_once() -> None:
    message = error_for({"prefetch": -1, "engine": {"type": "x", "max_workers": 0}})
    assert message.count("\n") == 3


def test_config_error_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("engine: [unclosed")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_high_throughput_engine_is_built(tmp_path: Path) -> None:
    from outpost_endpoint.engine.high_throughput import HighThroughputEngine

    config = parse_config({"engine": {"type": "high-throughput"}})
    engine = build_engine(config.engine, tmp_path / "run")
    assert isinstance(engine, HighThroughputEngine) and engine.provider.label == "local"


def test_process_pool_engine_is_built() -> None:
    engine = build_engine(parse_config({"engine": {"max_workers": 3}}).engine)
    assert isinstance(engine, ProcessPoolEngine) and engine.max_workers == 3


def test_unknown_keys_suggest_the_key_meant() -> None:
    message = error_for({"max_worker": 2, "engine": {"provider": {"qeue": "debug"}}})
    assert "launcher; did you mean 'queue'?" in message
    assert "did you mean engine.max_workers?" in message  # a key put in the wrong section


class _Billion(list[str]):
    """A list that says it holds a billion items (building a real one would take ~8 GB)."""

    def __len__(self) -> int:
        return 1_000_000_000


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"engine": {"available_accelerators": 1_000_000_000}},
            "engine.available_accelerators: 1000000000 is too large",
        ),
        ({"engine": {"available_accelerators": _Billion()}}, "lists too many devices"),
        (
            {"engine": {"max_workers_per_node": 10**12}},
            "engine.max_workers_per_node: 1000000000000 is too large; use a whole number <= ",
        ),
        ({"engine": {"provider": {"max_blocks": 10**9}}}, "engine.provider.max_blocks: 1000000000"),
        ({"prefetch": 10**9}, "prefetch: 1000000000 is too large; use a whole number <= 65535"),
        ({"allowed_functions": _Billion()}, "allowed_functions: [] lists more than"),
    ],
)
def test_huge_values_are_refused_before_anything_is_built(data: Any, expected: str) -> None:
    """A mistyped count must be refused, not turned into a list that fills the memory."""
    message = error_for(data)
    assert expected in message and len(message) < 400


def test_special_numbers_are_refused() -> None:
    message = error_for({"engine": {"heartbeat_period": float("nan"), "max_idletime": True}})
    assert "engine.heartbeat_period: nan is not a finite number" in message
    assert "engine.max_idletime: True is not a number" in message
