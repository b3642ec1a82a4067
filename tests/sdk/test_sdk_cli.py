"""The user CLI `outpost`, run in-process with click's runner against the fake service."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from sdk_fake_service import ENDPOINT, TOKEN, FakeService

from outpost import Client, Executor
from outpost.cli import cli
from outpost.credentials import credentials_path

WAIT = 30


def fail() -> None:
    raise ValueError("no beam today")


@pytest.fixture
def env(service: FakeService) -> dict[str, str]:
    return {"OUTPOST_URL": service.url, "OUTPOST_TOKEN": TOKEN}


def test_help_teaches() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for text in ("OUTPOST_URL", "outpost login", "endpoints", "tasks"):
        assert text in result.output


def test_login_checks_the_token_and_writes_credentials(service: FakeService) -> None:
    result = CliRunner().invoke(cli, ["login", "--url", service.url, "--token", TOKEN])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(credentials_path().stat().st_mode) == 0o600
    assert Client().list_endpoints() == []  # the SDK now finds the credentials


def test_login_reads_the_token_from_a_file(service: FakeService, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    result = CliRunner().invoke(cli, ["login", "--url", service.url, "--token", f"@{token_file}"])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
    assert Client().list_endpoints() == []
    literal = CliRunner().invoke(cli, ["--token", TOKEN, "--url", service.url, "endpoints", "list"])
    assert literal.exit_code == 0 and "--token on the command line is visible" in literal.stderr
    missing = CliRunner().invoke(cli, ["--token", f"@{tmp_path}/none", "endpoints", "list"])
    assert missing.exit_code == 2 and "cannot read" in missing.output


def test_login_with_a_bad_token_writes_nothing(service: FakeService) -> None:
    result = CliRunner().invoke(cli, ["login", "--url", service.url, "--token", "bad"])
    assert result.exit_code == 1
    assert "HTTP 401" in result.output
    assert not credentials_path().exists()


def test_login_never_prompts_without_a_terminal(service: FakeService) -> None:
    result = CliRunner().invoke(cli, ["login", "--url", service.url], input="")
    assert result.exit_code == 2
    assert "--token missing" in result.output and "not a terminal" in result.output


def test_missing_configuration_is_a_clear_error() -> None:
    result = CliRunner().invoke(cli, ["endpoints", "list"])
    assert result.exit_code == 1
    assert "outpost login" in result.output


def test_endpoints_list(client: Client, env: dict[str, str]) -> None:
    endpoint_id = client.register_endpoint("polaris")["endpoint_id"]
    result = CliRunner().invoke(cli, ["endpoints", "list"], env=env)
    assert result.exit_code == 0, result.output
    assert endpoint_id in result.output and "polaris" in result.output and "online" in result.output


def test_tasks_status_group_and_result(client: Client, env: dict[str, str]) -> None:
    with Executor(ENDPOINT, client) as ex:
        good = ex.submit(pow, 2, 8)
        bad = ex.submit(fail)
        assert good.result(timeout=WAIT) == 256
        assert bad.exception(timeout=WAIT) is not None
    runner = CliRunner()

    status = runner.invoke(cli, ["tasks", "status", good.task_id or ""], env=env)
    assert status.exit_code == 0 and "success" in status.output

    group = runner.invoke(cli, ["tasks", "group", ex.task_group_id], env=env)
    assert group.exit_code == 0
    assert good.task_id in group.output and bad.task_id in group.output
    assert "2 tasks (failed: 1, success: 1)" in group.output

    value = runner.invoke(cli, ["tasks", "result", good.task_id or ""], env=env)
    assert value.exit_code == 0 and value.output.strip() == "256"

    failure = runner.invoke(cli, ["tasks", "result", bad.task_id or ""], env=env)
    assert failure.exit_code == 1
    assert "ValueError: no beam today" in failure.output and "in fail" in failure.output


def test_tasks_result_pending(service: FakeService, client: Client, env: dict[str, str]) -> None:
    service.hold()
    with Executor(ENDPOINT, client) as ex:
        future = ex.submit(pow, 2, 8)
        assert future.task_id_ready.wait(WAIT)
        result = CliRunner().invoke(cli, ["tasks", "result", future.task_id or ""], env=env)
        assert result.exit_code == 2 and "no result yet" in result.output
        service.release()


def test_unknown_task(env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["tasks", "status", "nope"], env=env)
    assert result.exit_code == 1 and "HTTP 404" in result.output
