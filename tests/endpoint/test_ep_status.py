"""``outpost-endpoint status NAME``: the engine's view (blocks, managers, queues) from
``run/status.json``, as text and ``--json``; CliRunner on a written file and a real daemon."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner

from outpost_endpoint.cli import main

from .engine.conftest import wait_until
from .test_ep_daemon import cli, env, fake_service  # noqa: F401  (fixtures)


def test_status_prints_blocks_managers_and_queues_from_the_status_file(home: Path) -> None:
    assert CliRunner().invoke(main, ["configure", "ep"]).exit_code == 0
    run_dir = home / "endpoints" / "ep" / "run"
    run_dir.mkdir()
    status = {
        "at": time.time(), "type": "high-throughput", "workers": 4, "idle": 1, "running": 3,
        "queued": 7, "outstanding": 10, "queued_by_shape": {"python": 5, "mpi:2": 2},
        "blocks": [{"block_id": "block-1", "job_id": "4242", "state": "running", "message": ""}],
        "managers": [{"manager_id": "m", "hostname": "nid001", "block_id": "block-1",
                      "workers": 4, "busy": 3, "idle": 1, "accelerators": ["0", "1", "2", "3"],
                      "walltime_left": 1790.4, "draining": False}],
    }  # fmt: skip
    (run_dir / "status.json").write_text(json.dumps(status))
    text = CliRunner().invoke(main, ["status", "ep"], catch_exceptions=False).output
    assert "stopped" in text
    assert "block-1    job 4242         running" in text
    assert "nid001" in text and "busy 3 idle 1 accelerators 0,1,2,3 walltime left 1790 s" in text
    assert "queued by shape: mpi:2 2, python 5" in text
    as_json = json.loads(CliRunner().invoke(main, ["status", "ep", "--json"]).output)
    assert as_json["running"] is False and as_json["engine"]["blocks"][0]["job_id"] == "4242"


def test_status_of_a_running_high_throughput_endpoint(env: dict[str, str], home: Path) -> None:  # noqa: F811
    assert cli(env, "configure", "hte").returncode == 0
    (home / "endpoints" / "hte" / "config.yaml").write_text(
        "heartbeat_interval: 0.5\nshutdown_grace: 1\nengine:\n  type: high-throughput\n"
        "  max_workers_per_node: 2\n  provider:\n    type: local\n    min_blocks: 1\n"
    )
    started = cli(env, "start", "hte")
    assert started.returncode == 0, started.stderr
    try:

        def engine() -> dict[str, object] | None:
            data = json.loads(cli(env, "status", "hte", "--json").stdout)["engine"]
            return data if data and data["managers"] else None

        view = wait_until(engine, 120, "the block's manager in `status --json`")
        assert view["workers"] == 2 and view["blocks"][0]["state"] == "running"
        text = cli(env, "status", "hte").stdout
        assert "running (pid" in text and "workers 2 busy 0 idle 2" in text
        log = cli(env, "logs", "hte", "-n", "200").stdout
        assert "engine high-throughput (provider local, launcher simple" in log
        assert "workers per node 2" in log
    finally:
        assert cli(env, "stop", "hte").returncode == 0
