"""``GET /health``: liveness for load balancers and scripts; needs no token."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from outpost.protocol import PROTOCOL_VERSION, runtime_versions
from outpost.protocol.api import Health
from outpost_service.routing import declare

bp = Blueprint("health", __name__)


@bp.get("/health")
@declare(scope="public", answers=Health)
def health() -> dict[str, Any]:
    """Liveness, service version and protocol version."""
    return {
        "status": "ok",
        "version": runtime_versions()["outpost"],
        "protocol": PROTOCOL_VERSION,
    }
