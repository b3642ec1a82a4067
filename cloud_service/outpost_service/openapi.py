"""The OpenAPI 3.1 document of the HTTP API, generated from the routes the app serves.

Each route's declaration (:mod:`.routing`) gives its scope, body model and answer model; the
view's docstring gives its summary (first line) and description (the rest); the models give
the schemas (``model_json_schema``) with their docstrings and field descriptions.  Nothing here
names a route, so the document cannot fall behind the app.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from flask import Flask
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from outpost.protocol import runtime_versions
from outpost.protocol.api import ErrorAnswer
from outpost_service.errors import ApiError
from outpost_service.routing import Declaration, declaration_of
from outpost_service.validation import Uuid

#: Where the document is kept once built, in ``app.extensions``.
EXTENSION = "outpost.openapi"

#: The errors every route that needs a token may answer.
PROTECTED_ERRORS = (400, 401, 403, 404, 413, 422, 429)

_PATH_PART = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")
#: Every part of a path is an id (see :mod:`.routing`).
_PATH_ID = TypeAdapter(Uuid).json_schema()


class _Route(NamedTuple):
    """One method of one path, as the app serves it."""

    path: str  # in OpenAPI's spelling: /v1/tasks/{task_id}
    method: str
    view: Callable[..., Any]
    declaration: Declaration
    arguments: list[str]


def openapi_document(app: Flask | None = None) -> dict[str, Any]:
    """The document of ``app``'s routes (of every blueprint's, without an app); ``servers``
    is left out so it is valid behind any address."""
    if app is None:
        return _document(_routes_only())
    if EXTENSION not in app.extensions:
        app.extensions[EXTENSION] = _document(app)
    document: dict[str, Any] = app.extensions[EXTENSION]
    return document


def _routes_only() -> Flask:
    """An app with every route and nothing behind them (no database, no broker)."""
    from outpost_service.api import BLUEPRINTS  # the blueprints serve this module's document

    app = Flask("outpost_service.openapi", static_folder=None)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    return app


def _document(app: Flask) -> dict[str, Any]:
    routes: list[_Route] = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        declaration = declaration_of(view)
        if declaration is None or declaration.scope == "ui":
            continue  # create_app refuses an undeclared route; ui: dashboard pages, not API
        path = _PATH_PART.sub(r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append(_Route(path, method.lower(), view, declaration, sorted(rule.arguments)))
    refs, schemas = _schemas(routes)
    paths: dict[str, dict[str, Any]] = {}
    for route in sorted(routes, key=lambda r: (r.path, r.method)):
        paths.setdefault(route.path, {})[route.method] = _operation(route, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Outpost cloud service",
            "version": runtime_versions()["outpost"],
            "description": "Submit Python functions and shell commands to HPC endpoints and "
            "collect their results. Payloads are base64 text of outpost.protocol.serialize "
            'output. Every error is {"error": {"code", "message", "details"}}.',
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token from `outpost-service create-user NAME`; each "
                    "route needs one of its scopes (read, submit, manage)",
                }
            },
            "schemas": schemas,
            "responses": {
                _response_name(kinds): _json(refs[ErrorAnswer, "serialization"], _described(kinds))
                for kinds in _error_kinds().values()
            },
        },
    }


#: A model as read (``validation``: bodies) or as written (``serialization``: answers).
_Schema = tuple[type[BaseModel], JsonSchemaMode]


def _schemas(routes: list[_Route]) -> tuple[dict[_Schema, dict[str, Any]], dict[str, Any]]:
    """The ``$ref`` of every model the routes name (bodies as read, answers as written), and
    the schemas they refer to."""
    wanted: dict[_Schema, None] = {(ErrorAnswer, "serialization"): None}
    for route in routes:
        if route.declaration.body is not None:
            wanted[route.declaration.body, "validation"] = None
        if route.declaration.answers is not None:
            wanted[route.declaration.answers, "serialization"] = None
    refs, top = models_json_schema(list(wanted), ref_template="#/components/schemas/{model}")
    return {key: refs[key] for key in wanted}, dict(top.get("$defs", {}))


def _operation(route: _Route, refs: dict[_Schema, dict[str, Any]]) -> dict[str, Any]:
    view, declaration = route.view, route.declaration
    summary, _, description = inspect.cleandoc(view.__doc__ or view.__name__).partition("\n\n")
    answer = (
        refs[declaration.answers, "serialization"]
        if declaration.answers is not None
        else {"type": "object"}
    )
    operation: dict[str, Any] = {
        "summary": " ".join(summary.split()),
        "operationId": view.__name__,
        "responses": {"200": _json(answer, "OK", declaration.media_type)},
    }
    if declaration.scope == "public":
        operation["security"] = []
        operation["description"] = "Needs no token."
    else:
        operation["description"] = f"Needs a token with scope `{declaration.scope}`."
        operation["x-scope"] = declaration.scope
    if description:
        operation["description"] += "\n\n" + " ".join(description.split())
    if declaration.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[declaration.body, "validation"]}},
        }
    if route.arguments:
        operation["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": _PATH_ID}
            for name in route.arguments
        ]
    statuses = () if declaration.scope == "public" else PROTECTED_ERRORS
    kinds = _error_kinds()
    for status in sorted({*statuses, *declaration.errors}):
        name = _response_name(kinds[status])
        operation["responses"][str(status)] = {"$ref": f"#/components/responses/{name}"}
    return operation


def _error_kinds() -> dict[int, list[type[ApiError]]]:
    """The service's error classes (:mod:`.errors`) by HTTP status, each named by its class
    and described by its docstring."""
    kinds: dict[int, list[type[ApiError]]] = {}
    pending = ApiError.__subclasses__()
    while pending:
        kind = pending.pop()
        kinds.setdefault(kind.status, []).append(kind)
        pending.extend(kind.__subclasses__())
    return {status: sorted(found, key=lambda k: k.__name__) for status, found in kinds.items()}


def _response_name(kinds: list[type[ApiError]]) -> str:
    return kinds[0].__name__


def _described(kinds: list[type[ApiError]]) -> str:
    return " ".join(
        f"`{kind.code}`: {' '.join(inspect.cleandoc(kind.__doc__ or '').split())}" for kind in kinds
    )


def _json(
    schema: dict[str, Any], description: str, media_type: str = "application/json"
) -> dict[str, Any]:
    if media_type != "application/json":
        schema = {"type": "string"}
    return {"description": description, "content": {media_type: {"schema": schema}}}
