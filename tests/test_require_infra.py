"""``OUTPOST_REQUIRE_INFRA=1`` turns a test's "component missing" into a failure.

Runs pytest on a one-test file that calls :func:`tests.recipes.missing` (the one helper every
"no RabbitMQ / PostgreSQL / Slurm / MPICH / ..." path goes through): skipped without the
variable, failed with it, the message naming the component and the fix.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

PROBE = """
from tests.recipes import missing

def test_needs_a_cluster():
    missing("the flux capacitor", "install it with `make flux`")
"""


@pytest.mark.parametrize(("require", "outcome"), [("", "1 skipped"), ("1", "1 failed")])
def test_missing_component_skips_or_fails(tmp_path: Path, require: str, outcome: str) -> None:
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    env = dict(os.environ, OUTPOST_REQUIRE_INFRA=require, PYTHONPATH=str(ROOT))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfs", "-p", "no:cacheprovider", str(probe),
         "--rootdir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert outcome in run.stdout, run.stdout + run.stderr
    assert "the flux capacitor is missing: install it with `make flux`" in run.stdout
    if require:
        assert "OUTPOST_REQUIRE_INFRA=1" in run.stdout
