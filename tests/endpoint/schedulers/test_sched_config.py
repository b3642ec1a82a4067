"""Scheduler settings in config.yaml: the seed's Polaris values, validation messages, templates."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from outpost_endpoint.cli import main
from outpost_endpoint.config import load_config, parse_config
from outpost_endpoint.errors import ConfigError

TEMPLATES = Path(__file__).resolve().parents[3] / "endpoint/outpost_endpoint/config_templates"


def test_polaris_template_is_the_seed_config_one_to_one() -> None:
    engine = load_config(TEMPLATES / "polaris.yaml").engine
    assert engine.type == "high-throughput"
    assert engine.available_accelerators == ["0", "1", "2", "3"]
    assert engine.cpu_affinity == "alternating"
    assert engine.prefetch_capacity == 0
    p = engine.provider
    assert (p.type, p.account, p.queue, p.walltime) == (
        "pbspro",
        "datascience",
        "debug",
        "00:10:00",
    )
    assert p.scheduler_options == "#PBS -l filesystems=home:eagle"
    assert p.select_options == "ngpus=4"
    assert p.worker_init == "source /path/to/env; cd /path/to/rundir"
    assert (p.nodes_per_block, p.min_blocks, p.max_blocks, p.cpus_per_node) == (1, 0, 1, 64)
    assert (p.launcher.type, p.launcher.bind_cmd, p.launcher.overrides) == (
        "mpiexec",
        "--cpu-bind",
        "--depth=64 --ppn 1",
    )


def test_slurm_template_loads() -> None:
    provider = load_config(TEMPLATES / "slurm.yaml").engine.provider
    assert (provider.type, provider.partition, provider.launcher.type) == ("slurm", "debug", "srun")


def _errors(provider: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config({"engine": {"type": "high-throughput", "provider": provider}})
    return str(info.value)


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        ({"type": "pbs"}, "engine.provider.type: 'pbs' is not one of: local, pbspro, slurm"),
        (
            {"walltime": "10:00"},
            "engine.provider.walltime: '10:00' is not a walltime; write it as a quoted "
            '"HH:MM:SS"',
        ),
        ({"walltime": 600}, "engine.provider.walltime: 600 is not a walltime"),
        (
            {"min_blocks": 2, "max_blocks": 1},
            "engine.provider.min_blocks: 2 is larger than max_blocks (1)",
        ),
        ({"max_queued_blocks": 0}, "engine.provider.max_queued_blocks: 0 is too small"),
        (
            {"type": "slurm", "select_options": "ngpus=4"},
            "engine.provider.select_options: is only used by provider type pbspro "
            "(type is 'slurm'); remove it or set type: pbspro",
        ),
        (
            {"type": "pbspro", "partition": "gpu"},
            "engine.provider.partition: is only used by provider type slurm",
        ),
        (
            {"type": "pbspro", "launcher": {"type": "srun"}},
            "engine.provider.launcher.type: 'srun' needs provider type slurm",
        ),
        (
            {"type": "pbspro", "place": "spread"},
            "engine.provider.place: 'spread' is not one of: scatter, pack",
        ),
        (
            {"launcher": {"type": "mpirun"}},
            "engine.provider.launcher.type: 'mpirun' is not one of: simple, single, "
            "mpiexec, srun, aprun",
        ),
        (
            {"type": "slurm", "gpus_per_node": "four"},
            "engine.provider.gpus_per_node: 'four' is not an integer",
        ),
        ({"launcher": {"bind": "x"}}, "engine.provider.launcher.bind: unknown key"),
    ],
)
def test_validation_names_field_value_and_fix(provider: dict[str, object], message: str) -> None:
    assert message in _errors(provider)


@pytest.mark.parametrize("template", ["polaris", "slurm", "local"])
def test_configure_writes_each_template(
    template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTPOST_HOME", str(tmp_path))
    monkeypatch.delenv("OUTPOST_URL", raising=False)
    result = CliRunner().invoke(main, ["configure", "ep1", "--template", template])
    assert result.exit_code == 0, result.output
    written = tmp_path / "endpoints" / "ep1" / "config.yaml"
    assert written.read_text() == (TEMPLATES / f"{template}.yaml").read_text()
    load_config(written)  # valid as written
