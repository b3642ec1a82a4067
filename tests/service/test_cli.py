"""The ``outpost-service`` commands that manage users and the database (in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from outpost_service.cli import main
from outpost_service.store import Database
from outpost_service.store.schema import SCHEMA_VERSION, meta
from outpost_service.store.users import find_token, hash_token


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("OUTPOST_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OUTPOST_DATABASE_URL", raising=False)
    return CliRunner()


def test_create_user_issues_tokens_into_the_default_database(
    runner: CliRunner, tmp_path: Path
) -> None:
    plain = runner.invoke(main, ["create-user", "erin"])
    assert plain.exit_code == 0, plain.output
    token = plain.output.removeprefix("token: ").strip()
    as_json = runner.invoke(main, ["create-user", "erin", "--json"])
    second = json.loads(as_json.output)["token"]
    assert token.startswith("op_") and second.startswith("op_") and token != second
    database = Database(f"sqlite:///{tmp_path}/home/service/outpost.db")
    with database.read() as conn:
        first_record = find_token(conn, hash_token(token))
        second_record = find_token(conn, hash_token(second))
    assert first_record is not None and second_record is not None
    assert first_record.user == second_record.user  # the same user, another token
    revoked = runner.invoke(main, ["revoke-token", token])
    assert revoked.exit_code == 0, revoked.output
    again = runner.invoke(main, ["revoke-token", token])
    assert again.exit_code == 1 and "no such active token" in again.output
    database.dispose()


def test_bad_input_gets_one_clear_line(runner: CliRunner, tmp_path: Path) -> None:
    bad_name = runner.invoke(main, ["create-user", "no spaces please"])
    assert bad_name.exit_code == 2 and "letters, digits" in bad_name.output
    bad_url = runner.invoke(main, ["init-db", "--database-url", "mysql://x@y/z"])
    assert bad_url.exit_code == 1 and "postgresql+psycopg" in bad_url.output
    assert "Traceback" not in bad_url.output


def test_init_db_refuses_another_schema_version(runner: CliRunner, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/versioned.db"
    assert runner.invoke(main, ["init-db", "--database-url", url]).exit_code == 0
    database = Database(url)
    with database.write() as conn:
        conn.execute(meta.update().values(value="0"))
    database.dispose()
    result = runner.invoke(main, ["init-db", "--database-url", url])
    assert result.exit_code == 1
    assert "schema version 0" in result.output
    assert f"schema version {SCHEMA_VERSION}" in result.output


def test_help_teaches(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--help"])
    assert "create-user" in result.output and "serve" in result.output
    serve_help = runner.invoke(main, ["serve", "--help"]).output
    for option in ("--port", "--no-ingest", "--amqp-prefix", "--database-url", "--threads"):
        assert option in serve_help


def test_secrets_come_from_files_and_literal_ones_are_warned_about(
    runner: CliRunner, tmp_path: Path
) -> None:
    """``@FILE`` keeps a secret out of ``ps``; a literal secret still works, with a warning."""
    url = f"sqlite:///{tmp_path}/secret.db"
    url_file = tmp_path / "database-url"
    url_file.write_text(url + "\n")
    made = runner.invoke(main, ["create-user", "frank", "--database-url", f"@{url_file}"])
    assert made.exit_code == 0, made.output
    assert Path(f"{tmp_path}/secret.db").exists()  # the URL was read from the file
    token_file = tmp_path / "token"
    token_file.write_text(made.output.removeprefix("token: "))
    revoked = runner.invoke(main, ["revoke-token", f"@{token_file}", "--database-url", url])
    assert revoked.exit_code == 0, revoked.output
    assert "warning" not in revoked.stderr

    missing = runner.invoke(main, ["init-db", "--database-url", f"@{tmp_path}/nope"])
    assert missing.exit_code == 2
    assert f"cannot read {tmp_path}/nope" in missing.output and "Traceback" not in missing.output
    (tmp_path / "empty").write_text("\n")
    empty = runner.invoke(main, ["init-db", "--database-url", f"@{tmp_path}/empty"])
    assert empty.exit_code == 2 and "is empty" in empty.output

    literal = runner.invoke(main, ["revoke-token", "op_typed-on-the-command-line"])
    assert "TOKEN on the command line is visible" in literal.stderr
    no_password = runner.invoke(main, ["init-db", "--database-url", f"sqlite:///{tmp_path}/x.db"])
    assert "warning" not in no_password.stderr  # nothing secret in it: nothing to warn about
    with_password = runner.invoke(
        main, ["init-db", "--database-url", "postgresql+psycopg://u:pw@127.0.0.1:1/db"]
    )
    assert "--database-url on the command line is visible" in with_password.stderr
    assert "OUTPOST_DATABASE_URL" in with_password.stderr
    help_text = runner.invoke(main, ["serve", "--help"]).output
    assert "@FILE" in help_text and "ps" in help_text
