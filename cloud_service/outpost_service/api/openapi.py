"""``GET /openapi.json``: the OpenAPI 3.1 description of every route; needs no token."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from outpost_service.openapi import openapi_document

bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
def openapi() -> dict[str, Any]:
    return openapi_document()
