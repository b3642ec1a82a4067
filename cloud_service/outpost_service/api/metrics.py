"""``GET /metrics``: the service's Prometheus metrics (:mod:`outpost_service.metrics`).

Not a user route: Prometheus scrapers carry no user token, and the page tells whoever reads it
the deployment's load, its endpoint ids and its queue depths.  So it answers only a request
bearing the operator's ``metrics_token`` (``Authorization: Bearer <metrics_token>``, what a
Prometheus ``scrape_config``'s ``authorization`` sends), and is off (403) while that setting is
empty.  docs/SECURITY.md says why this rather than a public page or an address allow-list.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, request

from outpost_service.errors import Forbidden, Unauthorized
from outpost_service.metrics import render
from outpost_service.routing import declare
from outpost_service.state import service_state

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@declare(scope="public", errors=(401, 403), media_type="text/plain")
def metrics() -> Response:
    """Prometheus metrics, in its text format.

    Needs the operator's ``metrics_token`` as a bearer token (not a user token); answers 403
    while the service has none configured."""
    expected = service_state().config.metrics_token
    if not expected:
        raise Forbidden(
            "/metrics is off: the service has no metrics_token; set OUTPOST_METRICS_TOKEN (a "
            "long random secret) and give it to the Prometheus scraper as its bearer token",
            code="metrics_disabled",
        )
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        raise Unauthorized(
            "/metrics needs 'Authorization: Bearer <metrics_token>' (the service's "
            "OUTPOST_METRICS_TOKEN, not a user token)",
            code="invalid_metrics_token",
        )
    body, content_type = render(current_app._get_current_object())  # type: ignore[attr-defined]
    return Response(body, content_type=content_type)
