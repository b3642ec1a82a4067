"""Secrets at rest: every folder the service and the endpoint create is 0700, every file 0600.

The service's SQLite database holds the task-signing private key and every task's data; the
endpoint's home holds its token, keys, journal (task arguments), log, run folder and block
logs.  They were 0644 (the daemon forced umask 022).  A real ``outpost-service serve`` with its
default database location and a real endpoint daemon (high-throughput engine, local blocks)
run tasks; then every path under both homes is checked (the whole tree is walked, not one
file), while the service still runs (its -wal/-shm files exist).  A home left loose by an
older version is tightened at the next start, and that is logged once.
"""

from __future__ import annotations

import os
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from outpost import Client, Executor, ShellFunction
from outpost.protocol.private_files import tighten

from ..e2e.stack import RunningService, cli, make_endpoint, start_service, stop_service


def write_marker(path: str) -> str:
    """A task that creates a file (tasks inherit the daemon's umask 077)."""
    with open(path, "w") as handle:
        handle.write("x")
    return path


def loose_paths(root: Path) -> list[str]:
    """Every path under ``root`` (itself included) that is not private: folders must be 0700,
    files 0600 (or 0700 for the scripts and programs we make executable)."""
    bad = []
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            continue
        mode = stat.S_IMODE(info.st_mode)
        allowed = {0o700} if stat.S_ISDIR(info.st_mode) else {0o600, 0o700}
        if mode not in allowed:
            bad.append(f"{oct(mode)} {path}")
    return bad


def loosen(root: Path) -> None:
    """What an older version left: folders 0755, files 0644."""
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    home = tmp_path / "service-home"
    # the default location: $OUTPOST_HOME/service/outpost.db (see ServiceConfig)
    running = start_service(home, f"sqlite:///{home}/service/outpost.db")
    yield running
    stop_service(running)


def test_everything_the_service_and_endpoint_create_is_private(
    service: RunningService, tmp_path: Path
) -> None:
    name = f"files{uuid.uuid4().hex[:6]}"
    home = tmp_path / "endpoint-home"
    endpoint = make_endpoint(service, home, name)
    client = Client(url=service.url, token=service.token)
    made = tmp_path / "made-by-task"
    try:
        with Executor(endpoint.endpoint_id, client=client) as ex:
            assert ex.submit(pow, 2, 10).result(timeout=120) == 1024
            assert ex.submit(ShellFunction("echo {x}"), x="hi").result(timeout=120).stdout == "hi\n"
            assert ex.submit(write_marker, str(made)).result(timeout=120) == str(made)
        endpoint_root = home / "endpoints" / name
        for expected in ("config.yaml", "endpoint.json", "endpoint.log", "journal.db", "run"):
            assert (endpoint_root / expected).exists(), expected
        assert list((endpoint_root / "run").rglob("*.log")), "no block logs were written"
        db = service.home / "service" / "outpost.db"
        assert db.exists() and db.with_name("outpost.db-wal").exists()
        assert loose_paths(service.home) == []
        assert loose_paths(home) == []
        assert stat.S_IMODE(made.stat().st_mode) == 0o600  # tasks run with umask 077 too
    finally:
        endpoint.run("stop", name, check=False)
        client.close()
    assert loose_paths(home) == []  # also what stop wrote


def test_loose_homes_are_tightened_at_start_and_logged_once(
    service: RunningService, tmp_path: Path
) -> None:
    name = f"loose{uuid.uuid4().hex[:6]}"
    home = tmp_path / "endpoint-home"
    endpoint = make_endpoint(service, home, name)
    endpoint.run("stop", name)
    loosen(home)
    log = home / "endpoints" / name / "endpoint.log"
    before = log.read_text().count("removed group/other access")
    assert before == 0
    endpoint.start()
    try:
        assert loose_paths(home) == []
        assert log.read_text().count("removed group/other access") == 1
    finally:
        endpoint.run("stop", name, check=False)

    # the service's database (and its folder under OUTPOST_HOME), by any command that opens it
    loosen(service.home)
    env = {**service.env(), "OUTPOST_DATABASE_URL": service.database_url}
    run = subprocess.run(
        [cli("outpost-service"), "create-user", "carol"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("removed group/other access") == 1, run.stderr
    service_db_dir = service.home / "service"
    assert loose_paths(service_db_dir) == []


def test_tighten_keeps_owner_bits_and_skips_links(tmp_path: Path) -> None:
    script, data, outside = tmp_path / "run.sh", tmp_path / "data", tmp_path.parent / "outside"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    data.write_text("x")
    data.chmod(0o644)
    outside.write_text("not ours to change")
    outside.chmod(0o644)
    (tmp_path / "link").symlink_to(outside)
    tmp_path.chmod(0o755)
    changed = tighten([tmp_path], recursive=True)
    assert sorted(changed) == sorted([tmp_path, script, data])
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    assert stat.S_IMODE(script.stat().st_mode) == 0o700
    assert stat.S_IMODE(data.stat().st_mode) == 0o600
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644  # the link was not followed
    assert os.access(script, os.X_OK)
