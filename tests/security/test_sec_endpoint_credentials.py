"""The endpoint never sends a token stored for one service URL to another (issue 12, item 6a).

The endpoint resolves its URL and token with the SDK's resolver
(``outpost.credentials.resolve_credentials``): a token in ``~/.outpost/credentials.json`` or in
the endpoint's own ``credentials.json`` goes only to the URL stored with it.  Each test points
config.yaml's ``service_url`` at a real local HTTP listener that records every Authorization
header it receives, starts the endpoint as a real process, and checks what reached the wire.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from outpost.credentials import write_credentials

CLI = str(Path(sys.executable).parent / "outpost-endpoint")


class RecordingListener:
    """An HTTP server that answers every request 401 and remembers each Authorization header
    (None for a request without one)."""

    def __init__(self) -> None:
        self.authorizations: list[str | None] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                listener.authorizations.append(self.headers.get("Authorization"))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.dumps(
                    {"error": {"code": "unauthorized", "message": "recorded", "details": {}}}
                ).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = do_PUT = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


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
