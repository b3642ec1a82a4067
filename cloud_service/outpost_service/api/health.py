"""``GET /health``: liveness for load balancers and scripts; needs no token."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from outpost.protocol import PROTOCOL_VERSION, runtime_versions

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> dict[str, Any]:
    return {
        "status": "ok",
        "version": runtime_versions()["outpost"],
        "protocol": PROTOCOL_VERSION,
    }
