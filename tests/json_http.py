"""A real HTTP server on a random localhost port that answers JSON: the plumbing of the test
stand-ins for the service (tests/sdk/sdk_fake_service.py, tests/endpoint/fake_service.py), so
the code under test runs through its real HTTP client."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: ``(method, path, headers, body) -> (status, JSON answer)``.
Answerer = Callable[[str, str, Mapping[str, str], bytes], tuple[int, Any]]


class JsonServer:
    """Serves ``answer`` from :meth:`start` until :meth:`close`."""

    def __init__(self, answer: Answerer) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(answer))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> JsonServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def error(status: int, code: str, message: str, details: Any = None) -> tuple[int, Any]:
    """An answer in the service's one error shape."""
    return status, {"error": {"code": code, "message": message, "details": details or {}}}


def _handler(answer: Answerer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _dispatch(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, data = answer(self.command, self.path.split("?")[0], self.headers, body)
            encoded = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)

        do_GET = do_POST = do_PUT = do_DELETE = _dispatch

    return Handler
