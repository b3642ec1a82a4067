"""The Flask app factory and the one error handler.

``create_app(config)`` builds an independent app (tests make as many as they need).  Every error,
ours or werkzeug's (404, 405, 413, ...), leaves through :func:`_handle_error` as
``{"error": {"code", "message", "details"}}``; an unexpected exception is logged and answered
500 without internals.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from outpost_service import metrics, ui
from outpost_service.api import BLUEPRINTS
from outpost_service.auth import authenticate
from outpost_service.config import ServiceConfig
from outpost_service.errors import ApiError, DatabaseUnavailable, Unauthorized
from outpost_service.routing import check_declarations
from outpost_service.state import EXTENSION, ServiceState
from outpost_service.store.database import database_away

log = logging.getLogger(__name__)


def create_app(config: ServiceConfig | Mapping[str, Any] | None = None) -> Flask:
    """Build the service app; the database schema is created (or checked) here."""
    if config is None:
        config = ServiceConfig.from_env()
    elif not isinstance(config, ServiceConfig):
        config = ServiceConfig.from_mapping(config)
    app = Flask("outpost_service", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = config.max_content_length
    app.json.sort_keys = False  # type: ignore[attr-defined]
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    app.register_blueprint(ui.bp)  # the dashboard (HTML pages), not part of the API's BLUEPRINTS
    check_declarations(app)  # before any connection is made: every route names its scope
    metrics.install(app)  # first: a request refused by authentication is timed too
    app.before_request(authenticate)
    app.extensions[EXTENSION] = ServiceState.build(config)
    app.register_error_handler(Exception, _handle_error)
    return app


def _handle_error(error: Exception) -> tuple[Response, int] | Response:
    if isinstance(error, ApiError):
        response = jsonify(error.to_dict())
        if isinstance(error, Unauthorized):
            response.headers["WWW-Authenticate"] = 'Bearer realm="outpost"'
        for name, value in getattr(error, "headers", {}).items():  # e.g. 429's Retry-After
            response.headers[name] = value
        return response, error.status
    if isinstance(error, HTTPException):
        status = error.code or 500
        details: dict[str, Any] = {}
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            details["allowed_methods"] = sorted(error.valid_methods)
        message = error.description or error.name
        if isinstance(error, RequestEntityTooLarge):
            limit = current_app.config["MAX_CONTENT_LENGTH"]
            message = f"request body is over the limit of {limit:,} bytes; send smaller batches"
            details["limit"] = limit
        body = {"error": {"code": _http_code(error), "message": message, "details": details}}
        response = jsonify(body)
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, status
    if database_away(error):
        log.warning("database unavailable while serving a request: %s", _first_line(error))
        error = DatabaseUnavailable(
            "the service's database is unavailable (restarting, overloaded or unreachable; "
            "the service log has the cause); retry in a few seconds -- a task submit retried "
            "with the same request_id never stores its tasks twice"
        )
        response = jsonify(error.to_dict())
        response.headers.update(error.headers)
        return response, error.status
    if isinstance(error, RecursionError):  # pathological input somewhere past json_body()
        return jsonify(_error("bad_request", "request is nested too deeply")), 400
    log.exception("unhandled error while serving a request")
    return jsonify(_error("internal_error", "internal server error; see the service log")), 500


def _first_line(error: Exception) -> str:
    original = getattr(error, "orig", None) or error
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__


#: Our codes for werkzeug's errors, where its name differs from the code we use ourselves.
_HTTP_CODES = {413: "payload_too_large"}


def _http_code(error: HTTPException) -> str:
    if error.code in _HTTP_CODES:
        return _HTTP_CODES[error.code]
    return (error.name or "error").lower().replace(" ", "_").replace("'", "")


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": {}}}
