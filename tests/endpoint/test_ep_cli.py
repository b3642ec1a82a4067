"""The endpoint CLI verbs that need no running daemon, through click's CliRunner."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from outpost_endpoint import pidfile
from outpost_endpoint.cli import main
from outpost_endpoint.config import load_config
from outpost_endpoint.paths import EndpointPaths


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_help_teaches_the_first_steps() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for verb in ("configure", "start", "stop", "restart", "status", "list", "delete", "logs"):
        assert verb in result.output
    assert "outpost-endpoint configure" in result.output


def test_configure_writes_a_valid_config_and_private_token(home: Path) -> None:
    result = run("configure", "ep1", "--service-url", "http://svc:8000", "--token", "tok")
    assert result.exit_code == 0, result.output
    paths = EndpointPaths.for_name("ep1")
    config = load_config(paths.config)
    assert config.service_url == "http://svc:8000" and config.engine.type == "high-throughput"
    assert config.engine.provider.type == "local"  # DESIGN.md: the template uses local blocks
    # The token is stored with its URL, so `start` never sends it to another service.
    assert json.loads(paths.credentials.read_text()) == {"url": "http://svc:8000", "token": "tok"}
    assert stat.S_IMODE(paths.credentials.stat().st_mode) == 0o600
    assert "outpost-endpoint start ep1" in result.output


def test_configure_takes_url_and_token_from_the_environment(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTPOST_URL", "http://from-env:1")
    monkeypatch.setenv("OUTPOST_TOKEN", "env-token")
    assert run("configure", "ep2").exit_code == 0
    paths = EndpointPaths.for_name("ep2")
    assert load_config(paths.config).service_url == "http://from-env:1"
    assert json.loads(paths.credentials.read_text())["token"] == "env-token"


def test_configure_reads_the_token_from_a_file_and_warns_about_a_literal_one(
    home: Path, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    from_file = CliRunner().invoke(main, ["configure", "ep3", "--token", f"@{token_file}"])
    assert from_file.exit_code == 0, from_file.output
    assert "warning" not in from_file.stderr
    credentials = EndpointPaths.for_name("ep3").credentials
    assert json.loads(credentials.read_text()) == {"token": "file-token"}

    literal = CliRunner().invoke(main, ["configure", "ep4", "--token", "typed"])
    assert literal.exit_code == 0
    assert "--token on the command line is visible" in literal.stderr
    assert "OUTPOST_TOKEN" in literal.stderr and "@FILE" in literal.stderr

    missing = CliRunner().invoke(main, ["configure", "ep5", "--token", f"@{tmp_path}/none"])
    assert missing.exit_code == 2 and "cannot read" in missing.output
    assert not EndpointPaths.for_name("ep5").config.exists()  # nothing written
    assert "@FILE" in run("configure", "--help").output


def test_configure_refuses_to_overwrite_without_force(home: Path) -> None:
    assert run("configure", "ep").exit_code == 0
    again = run("configure", "ep")
    assert again.exit_code == 1 and "--force" in again.output
    assert run("configure", "ep", "--force").exit_code == 0


def test_bad_names_are_refused(home: Path) -> None:
    result = run("configure", "../escape")
    assert result.exit_code == 1 and "not allowed" in result.output


def test_unknown_endpoint_says_how_to_create_it(home: Path) -> None:
    for verb in ("start", "stop", "status", "logs", "delete"):
        result = run(verb, "ghost")
        assert result.exit_code == 1, verb
        assert "ghost" in result.output and "configure" in result.output


def test_list_status_and_stop_of_a_stopped_endpoint(home: Path) -> None:
    assert run("list").output.startswith("no endpoints configured")
    run("configure", "alpha")
    run("configure", "beta")
    EndpointPaths.for_name("beta").write_info(
        {"endpoint_id": "1b2c3d4e-0000-0000-0000-000000000000"}
    )
    listing = run("list").output.splitlines()
    assert listing[0].split() == ["NAME", "ENDPOINT", "ID", "STATE"]
    assert listing[1].split() == ["alpha", "-", "stopped"]
    assert listing[2].split() == ["beta", "1b2c3d4e-0000-0000-0000-000000000000", "stopped"]
    status = run("status", "beta").output
    assert "stopped" in status and "1b2c3d4e-0000-0000-0000-000000000000" in status
    stop = run("stop", "alpha")
    assert stop.exit_code == 1 and "not running" in stop.output


def test_stale_pidfiles_are_ignored_and_removed(home: Path) -> None:
    run("configure", "ep")
    paths = EndpointPaths.for_name("ep")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    paths.pidfile.write_text(f"{gone.pid}\n")
    assert pidfile.read_pid(paths.pidfile) is None
    assert "stopped" in run("status", "ep").output
    assert run("stop", "ep").exit_code == 1
    assert not paths.pidfile.exists()


def test_a_zombie_is_not_running(home: Path) -> None:
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    assert pidfile.wait_gone(zombie.pid, 30)  # exited, but not reaped yet
    assert pidfile.process_state(zombie.pid) == "Z"
    assert not pidfile.is_alive(zombie.pid)
    zombie.wait()


def test_a_live_pid_is_running(home: Path) -> None:
    run("configure", "ep")
    paths = EndpointPaths.for_name("ep")
    paths.pidfile.write_text(f"{os.getpid()}\n")
    assert pidfile.read_pid(paths.pidfile) == os.getpid()
    assert f"running (pid {os.getpid()})" in run("status", "ep").output
    assert "running" in run("list").output
    paths.pidfile.unlink()


def test_logs_tail(home: Path) -> None:
    run("configure", "ep")
    paths = EndpointPaths.for_name("ep")
    assert "no log yet" in run("logs", "ep").output
    paths.log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert run("logs", "ep", "-n", "3").output == "line 97\nline 98\nline 99\n"


def test_delete_local_only_removes_the_directory(home: Path) -> None:
    run("configure", "ep")
    EndpointPaths.for_name("ep").write_info({"endpoint_id": "x"})
    assert run("delete", "ep", input="n\n").exit_code == 1  # declined
    result = run("delete", "ep", "--yes", "--local-only")
    assert result.exit_code == 0 and "deleted endpoint ep (x)" in result.output
    assert not EndpointPaths.for_name("ep").root.exists()
