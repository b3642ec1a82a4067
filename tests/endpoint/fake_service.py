"""A stand-in for the Outpost service's endpoint registration, over real HTTP.

The real service is being built in parallel; this answers ``POST /v1/endpoints`` and
``DELETE /v1/endpoints/<id>`` the way ARCHITECTURE.md specifies, so registration, the daemon and
the CLI are exercised through their real HTTP code paths.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeService:
    """Registers every endpoint onto one prepared AMQP topology."""

    def __init__(self, registration: dict[str, Any], token: str = "secret-token") -> None:
        self.registration = registration
        self.token = token
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        #: the Authorization header of every request (None where it had none)
        self.authorizations: list[str | None] = []
        self.deleted: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append((method, self.path, body))
                fake.authorizations.append(self.headers.get("Authorization"))
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    error = {"code": "unauthorized", "message": "missing or bad token"}
                    self._answer(401, {"error": error, "details": {}})
                elif method == "POST" and self.path == "/v1/endpoints":
                    self._answer(200, {"name": body.get("name"), **fake.registration})
                elif method == "DELETE" and self.path.startswith("/v1/endpoints/"):
                    fake.deleted.append(self.path.rsplit("/", 1)[1])
                    self._answer(200, {"deleted": self.path.rsplit("/", 1)[1]})
                else:
                    self._answer(404, {"error": {"code": "not_found", "message": self.path}})

            def do_POST(self) -> None:
                self._handle("POST")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
