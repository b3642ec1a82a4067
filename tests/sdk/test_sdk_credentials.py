"""Where Client() finds its URL and token."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from outpost.credentials import (
    credentials_path,
    read_credentials_file,
    resolve_credentials,
    write_credentials,
)
from outpost.errors import ConfigurationError


def test_missing_everything_says_how_to_fix() -> None:
    with pytest.raises(ConfigurationError, match=r"outpost login.*OUTPOST_URL"):
        resolve_credentials()


def test_file_is_written_0600_and_read_back() -> None:
    path = write_credentials("https://svc.example.org/", "s3cr3t")
    assert path == credentials_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_credentials_file() == {"url": "https://svc.example.org", "token": "s3cr3t"}
    creds = resolve_credentials()
    assert (creds.url, creds.token) == ("https://svc.example.org", "s3cr3t")
    assert "s3cr3t" not in repr(creds)


def test_order_arguments_then_env_then_file(monkeypatch: pytest.MonkeyPatch) -> None:
    write_credentials("https://file.example.org", "file-token")
    monkeypatch.setenv("OUTPOST_URL", "https://file.example.org/v1")
    monkeypatch.setenv("OUTPOST_TOKEN", "env-token")
    assert resolve_credentials().token == "env-token"
    assert resolve_credentials(token="arg-token").token == "arg-token"
    monkeypatch.delenv("OUTPOST_TOKEN")
    assert resolve_credentials().token == "file-token"


def test_file_token_is_not_sent_to_another_url() -> None:
    write_credentials("https://file.example.org", "file-token")
    with pytest.raises(ConfigurationError, match=r"holds a token for https://file\.example\.org"):
        resolve_credentials(url="https://other.example.org")


def test_bad_url() -> None:
    with pytest.raises(ConfigurationError, match="http"):
        resolve_credentials(url="svc.example.org", token="t")


def test_corrupt_file(monkeypatch: pytest.MonkeyPatch) -> None:
    path = credentials_path()
    path.parent.mkdir(parents=True)
    path.write_text("{nope")
    with pytest.raises(ConfigurationError, match="cannot read credentials file"):
        resolve_credentials()


def test_a_token_file_lends_its_token_to_its_own_url_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint's own credentials.json goes through the same rule (issue 12, item 6a)."""
    own = tmp_path / "endpoint-credentials.json"
    write_credentials("https://a.example.org", "endpoint-token", own)
    creds = resolve_credentials("https://a.example.org/v1", token_file=own)
    assert creds.token == "endpoint-token"
    with pytest.raises(ConfigurationError, match=r"holds a token for https://a\.example\.org.*FIX"):
        resolve_credentials("https://b.example.org", token_file=own, how_to_fix="FIX")
    # A token meant for the URL (here OUTPOST_TOKEN) is used instead of the other URL's.
    monkeypatch.setenv("OUTPOST_TOKEN", "env-token")
    assert resolve_credentials("https://b.example.org", token_file=own).token == "env-token"
    # A file without a URL (older endpoints) lends its token to the URL configured beside it.
    own.write_text('{"token": "legacy"}')
    assert resolve_credentials("https://b.example.org", token_file=own).token == "legacy"
