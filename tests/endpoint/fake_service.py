"""A stand-in for the Outpost service's endpoint registration, over real HTTP.

The real service is being built in parallel; this answers ``POST /v1/endpoints`` and
``DELETE /v1/endpoints/<id>`` the way ARCHITECTURE.md specifies, so registration, the daemon and
the CLI are exercised through their real HTTP code paths.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..json_http import JsonServer, error


class FakeService:
    """Registers every endpoint onto one prepared AMQP topology."""

    def __init__(self, registration: dict[str, Any], token: str = "secret-token") -> None:
        self.registration = registration
        self.token = token
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        #: the Authorization header of every request (None where it had none)
        self.authorizations: list[str | None] = []
        self.deleted: list[str] = []
        self._server = JsonServer(self._answer).start()
        self.url = self._server.url

    def _answer(
        self, method: str, path: str, headers: Mapping[str, str], raw: bytes
    ) -> tuple[int, Any]:
        body = json.loads(raw or b"{}")
        self.requests.append((method, path, body))
        self.authorizations.append(headers.get("Authorization"))
        if headers.get("Authorization") != f"Bearer {self.token}":
            return error(401, "unauthorized", "missing or bad token")
        if method == "POST" and path == "/v1/endpoints":
            return 200, {"name": body.get("name"), **self.registration}
        if method == "DELETE" and path.startswith("/v1/endpoints/"):
            self.deleted.append(path.rsplit("/", 1)[1])
            return 200, {"deleted": path.rsplit("/", 1)[1]}
        return error(404, "not_found", path)

    def close(self) -> None:
        self._server.close()
