"""``/metrics`` for a process without the HTTP app: ``outpost-service ingest`` on a machine of
its own (on an API machine, share ``PROMETHEUS_MULTIPROC_DIR`` instead).

With ``metrics_listen`` set (``HOST:PORT``), a small waitress server in a daemon thread answers
``GET /metrics`` with this process's recorded metrics (ingest counts, result age), under the
same rule as the API's route: ``Authorization: Bearer <metrics_token>``, off (403) while no
token is set.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app, multiprocess
from waitress.server import create_server

from outpost.errors import ConfigurationError
from outpost_service.config import ServiceConfig
from outpost_service.metrics import instruments

StartResponse = Callable[..., Any]


def serve_metrics(config: ServiceConfig) -> str | None:
    """Start the exporter if ``config.metrics_listen`` is set; returns its URL."""
    if not config.metrics_listen:
        return None
    host, _, port = config.metrics_listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigurationError(
            f"metrics_listen must be HOST:PORT (e.g. 127.0.0.1:9464), got {config.metrics_listen!r}"
        )
    registry = REGISTRY
    if instruments.MULTIPROC_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    app = _guarded(make_wsgi_app(registry), config.metrics_token)
    server = create_server(app, host=host.strip("[]"), port=int(port), threads=2)
    threading.Thread(target=server.run, name="outpost-metrics-exporter", daemon=True).start()
    return f"http://{config.metrics_listen}/metrics"


def _guarded(inner: Callable[..., Iterable[bytes]], token: str) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            return _plain(start_response, "404 Not Found", "only /metrics is served here\n")
        if not token:
            return _plain(
                start_response, "403 Forbidden", "/metrics is off: set OUTPOST_METRICS_TOKEN\n"
            )
        scheme, _, given = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return _plain(
                start_response,
                "401 Unauthorized",
                "/metrics needs 'Authorization: Bearer <metrics_token>'\n",
            )
        return inner(environ, start_response)

    return app


def _plain(start_response: StartResponse, status: str, text: str) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [text.encode()]
