"""Refused submissions (issue 11, item 6): the scheduler's own words, and the engine's backoff.

``qsub``/``sbatch`` refusals carry the scheduler's message as ``ProviderError.detail`` (what
``status`` shows as "blocks failing: ..."); the engine spaces its tries out instead of asking
at every scaling step.  Real commands: the PBS emulator refusing, and the real Slurm cluster
asked for a partition it does not have.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from outpost_endpoint.config import parse_config
from outpost_endpoint.engine.high_throughput import HighThroughputEngine
from outpost_endpoint.errors import ProviderError
from outpost_endpoint.providers.pbspro import PBSProProvider
from outpost_endpoint.providers.scheduler_command import SchedulerCommands
from outpost_endpoint.providers.slurm import SlurmProvider

from .conftest import PBSEmulator, wait_for

REFUSAL = "Job violates queue and/or server resource limits"
BUDGET = 1000


def refuse_qsub(pbs: PBSEmulator) -> None:
    pbs.fault(qsub={"mode": "refuse", "count": BUDGET, "message": REFUSAL})


def qsub_calls(pbs: PBSEmulator) -> int:
    return BUDGET - int(json.loads((pbs.state / "faults.json").read_text())["qsub"]["count"])


def test_qsub_refusal_detail_is_the_schedulers_message(pbs: PBSEmulator, tmp_path: Path) -> None:
    refuse_qsub(pbs)
    provider = PBSProProvider(run_dir=tmp_path / "run", commands=pbs.commands())
    with pytest.raises(ProviderError) as caught:
        provider.submit("true", "block-1")
    assert caught.value.detail == f"qsub: {REFUSAL}"
    assert "exited with status 38" in str(caught.value)  # the log keeps the whole story


def test_engine_backs_off_refused_submissions(pbs: PBSEmulator, tmp_path: Path) -> None:
    """Twenty scaling steps used to mean twenty qsub calls; the first retry waits >= 2.5 s."""
    refuse_qsub(pbs)
    config = parse_config(
        {"engine": {"type": "high-throughput", "provider": {"type": "pbspro", "min_blocks": 1}}}
    ).engine
    provider = PBSProProvider(run_dir=tmp_path / "run", min_blocks=1, commands=pbs.commands())
    engine = HighThroughputEngine(config, tmp_path / "run", provider=provider,
                                  strategy_period=0.1)  # fmt: skip
    engine.start()
    try:
        wait_for(lambda: engine.scale_rounds >= 20, 60, "20 scaling steps")
        assert 1 <= qsub_calls(pbs) <= 2, f"{qsub_calls(pbs)} qsub calls in 20 scaling steps"
        failing = engine.status()["provider_error"]
        assert failing["message"] == f"qsub: {REFUSAL}"
        assert failing["attempts"] == qsub_calls(pbs)
        assert failing["retry_in"] <= 10
    finally:
        engine.shutdown(wait=False)


@pytest.mark.usefixtures("slurm_cluster")
def test_sbatch_refusal_detail_is_the_schedulers_message(tmp_path: Path) -> None:
    provider = SlurmProvider(
        run_dir=tmp_path / "run",
        partition="no-such-partition",
        walltime="00:01:00",
        commands=SchedulerCommands(timeout=20, retries=0),
    )
    with pytest.raises(ProviderError) as caught:
        provider.submit("true", "block-1")
    assert "sbatch: error:" in caught.value.detail and "partition" in caught.value.detail
    assert len(caught.value.detail) <= 300
