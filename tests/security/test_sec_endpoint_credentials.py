"""The endpoint never sends a token stored for one service URL to another (issue 12, item 6a).

The endpoint resolves its URL and token with the SDK's resolver
(``outpost.credentials.resolve_credentials``): a token in ``~/.outpost/credentials.json`` or in
the endpoint's own ``credentials.json`` goes only to the URL stored with it.  Each test points
config.yaml's ``service_url`` (or a ``Client``) at a real local HTTP listener that records every
request and Authorization header it receives, runs the endpoint as a real process, and checks
what reached the wire.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from outpost import Client
from outpost.credentials import write_credentials
from outpost.errors import ConfigurationError
from tests.endpoint.fake_service import FakeService

CLI = str(Path(sys.executable).parent / "outpost-endpoint")


@pytest.fixture
def listener() -> Iterator[FakeService]:
    """A service that records every Authorization header and accepts none (answers 401)."""
    server = FakeService({}, token="accepted-by-nobody")
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
    env: dict[str, str], listener: FakeService
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
    env: dict[str, str], listener: FakeService
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
    env: dict[str, str], listener: FakeService
) -> None:
    """The control: the listener does see a token it may see, so the tests above are not
    passing because nothing is ever recorded."""
    configured = cli(env, "configure", "ep", "--service-url", listener.url, "--token", "ep-tok")
    assert configured.returncode == 0, configured.stderr
    point_at(env, "ep", listener.url + "/")  # another spelling of the same URL

    started = cli(env, "start", "ep")

    assert started.returncode == 1 and "HTTP 401" in started.stderr
    assert listener.authorizations and set(listener.authorizations) == {"Bearer ep-tok"}


def test_the_user_token_stored_for_the_configured_url_is_sent(
    env: dict[str, str], listener: FakeService
) -> None:
    """The control for the user's own file (`outpost login` to the endpoint's service)."""
    write_credentials(listener.url, "user-secret")
    assert cli(env, "configure", "ep", "--service-url", listener.url).returncode == 0

    started = cli(env, "start", "ep")

    assert started.returncode == 1 and "HTTP 401" in started.stderr
    assert set(listener.authorizations) == {"Bearer user-secret"}


def test_delete_does_not_send_a_token_stored_for_another_url(
    env: dict[str, str], listener: FakeService
) -> None:
    """``delete`` talks to the service too (DELETE /v1/endpoints/<id>): same resolver."""
    write_credentials("https://outpost.example.org", "user-secret")
    assert cli(env, "configure", "ep", "--service-url", listener.url).returncode == 0
    info = Path(env["OUTPOST_HOME"]) / "endpoints" / "ep" / "endpoint.json"
    info.write_text('{"endpoint_id": "0e6c0b5e-registered-before"}')

    deleted = cli(env, "delete", "ep", "--yes")

    assert deleted.returncode == 1
    assert f"no token for {listener.url}" in deleted.stderr
    assert f"outpost login --url {listener.url}" in deleted.stderr  # the fix, ready to copy
    assert listener.requests == [] and listener.authorizations == []
    assert info.exists()  # nothing removed while the service was not told


def test_the_sdk_refuses_the_same_way(
    env: dict[str, str], listener: FakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK's side of the one resolver: a Client for another URL than the stored token's
    sends nothing and says how to get a token for that URL."""
    monkeypatch.delenv("OUTPOST_URL", raising=False)
    monkeypatch.delenv("OUTPOST_TOKEN", raising=False)
    write_credentials("https://outpost.example.org", "user-secret")

    with pytest.raises(ConfigurationError) as refused:
        Client(listener.url, retries=0).list_endpoints()

    message = str(refused.value)
    assert f"no token for {listener.url}" in message
    assert "holds a token for https://outpost.example.org" in message
    assert f"outpost login --url {listener.url}" in message and "OUTPOST_TOKEN" in message
    assert "user-secret" not in message
    assert listener.requests == []
