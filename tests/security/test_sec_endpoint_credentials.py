"""The endpoint never sends a token stored for one service URL to another (issue 12, item 6a).

The endpoint resolves its URL and token with the SDK's resolver
(``outpost.credentials.resolve_credentials``): a token in ``~/.outpost/credentials.json`` or in
the endpoint's own ``credentials.json`` goes only to the URL stored with it.  Each test points
config.yaml's ``service_url`` at a real local HTTP listener that records every Authorization
header it receives, starts the endpoint as a real process, and checks what reached the wire.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from outpost.credentials import write_credentials

from ..json_http import JsonServer, error

CLI = str(Path(sys.executable).parent / "outpost-endpoint")


class RecordingListener(JsonServer):
    """An HTTP server that answers every request 401 and remembers each Authorization header
    (None for a request without one)."""

    def __init__(self) -> None:
        self.authorizations: list[str | None] = []
        super().__init__(self._record)
        self.start()

    def _record(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Any]:
        self.authorizations.append(headers.get("Authorization"))
        return error(401, "unauthorized", "recorded")


@pytest.fixture
def listener() -> Iterator[RecordingListener]:
    server = RecordingListener()
    yield server
    server.close()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A private OUTPOST_HOME; no URL or token from the environment."""
    home = tmp_path / "outpost"
    monkeypatch.setenv("OUTPOST_HOME", str(home))
    environment = {k: v for k, v in os.environ.items() if k not in ("OUTPOST_URL", "OUTPOST_TOKEN")}
    environment["OUTPOST_HOME"] = str(home)
    return environment


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def point_at(env: dict[str, str], name: str, url: str) -> None:
    config = Path(env["OUTPOST_HOME"]) / "endpoints" / name / "config.yaml"
    config.write_text(f"service_url: {url}\nengine:\n  type: process-pool\n  max_workers: 1\n")


def test_the_user_token_for_another_url_is_not_sent(
    env: dict[str, str], listener: RecordingListener
) -> None:
    write_credentials("https://outpost.example.org", "user-secret")  # `outpost login`
    assert cli(env, "configure", "ep", "--service-url", listener.url).returncode == 0
    assert not (Path(env["OUTPOST_HOME"]) / "endpoints" / "ep" / "credentials.json").exists()

    started = cli(env, "start", "ep")

    assert started.returncode == 1
    assert f"no token for {listener.url}" in started.stderr
    assert "holds a token for https://outpost.example.org" in started.stderr
    assert "service_url in" in started.stderr  # how to fix
    assert listener.authorizations == []  # nothing reached the listener, no token above all
    assert "user-secret" not in started.stderr


def test_the_endpoint_token_follows_its_url_not_an_edited_config(
    env: dict[str, str], listener: RecordingListener
) -> None:
    configured = cli(
        env, "configure", "ep", "--service-url", "https://outpost.example.org", "--token", "ep-tok"
    )
    assert configured.returncode == 0, configured.stderr
    point_at(env, "ep", listener.url)  # config.yaml edited to name another service

    started = cli(env, "start", "ep")

    assert started.returncode == 1
    assert "credentials.json holds a token for https://outpost.example.org" in started.stderr
    assert listener.authorizations == []


def test_a_token_stored_for_the_configured_url_is_sent(
    env: dict[str, str], listener: RecordingListener
) -> None:
    """The control: the listener does see a token it may see, so the tests above are not
    passing because nothing is ever recorded."""
    configured = cli(env, "configure", "ep", "--service-url", listener.url, "--token", "ep-tok")
    assert configured.returncode == 0, configured.stderr
    point_at(env, "ep", listener.url + "/")  # another spelling of the same URL

    started = cli(env, "start", "ep")

    assert started.returncode == 1 and "HTTP 401" in started.stderr
    assert listener.authorizations and set(listener.authorizations) == {"Bearer ep-tok"}
