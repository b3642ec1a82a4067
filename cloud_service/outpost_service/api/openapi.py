"""``GET /openapi.json``: the OpenAPI 3.1 description of every route; needs no token."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app

from outpost_service.openapi import openapi_document
from outpost_service.routing import declare

bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
@declare(scope="public")
def openapi() -> dict[str, Any]:
    """This document."""
    return openapi_document(current_app)
