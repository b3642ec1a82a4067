"""Every route declares the token scope it needs; authentication reads it from the route, and
an app with an undeclared route is never built."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Blueprint, Flask

from outpost_service import app as app_module
from outpost_service.errors import RouteError
from outpost_service.routing import declaration_of
from outpost_service.store.users import get_or_create_user, issue_token

from .conftest import Caller, app_state

#: What each route needs, as docs/ARCHITECTURE.md and docs/SECURITY.md say.
EXPECTED = {
    ("GET", "/health"): "public",
    ("GET", "/openapi.json"): "public",
    ("GET", "/ready"): "public",
    ("GET", "/metrics"): "public",  # no user token: its own metrics_token (api/metrics.py)
    ("POST", "/v1/endpoints"): "manage",
    ("GET", "/v1/endpoints"): "read",
    ("GET", "/v1/endpoints/<endpoint_id>"): "read",
    ("DELETE", "/v1/endpoints/<endpoint_id>"): "manage",
    ("GET", "/v1/endpoints/<endpoint_id>/policy"): "read",
    ("PUT", "/v1/endpoints/<endpoint_id>/policy"): "manage",
    ("POST", "/v1/functions"): "submit",
    ("POST", "/v1/tasks"): "submit",
    ("GET", "/v1/tasks/<task_id>"): "read",
    ("POST", "/v1/tasks/<task_id>/cancel"): "submit",
    ("POST", "/v1/results"): "read",
    ("GET", "/v1/task_groups/<task_group_id>/tasks"): "read",
    ("POST", "/v1/task_groups/<task_group_id>/retry"): "submit",
    ("GET", "/v1/task_groups/<task_group_id>/summary"): "read",
    # the dashboard (outpost_service.ui): its own session, not in OpenAPI
    **{
        (method, "/ui" + path): "ui"
        for method, path in [
            ("GET", "/"),
            ("GET", "/login"),
            ("POST", "/login"),
            ("POST", "/logout"),
            ("GET", "/static/<name>"),
            ("GET", "/endpoints"),
            ("GET", "/endpoints/live"),
            ("GET", "/groups"),
            ("GET", "/groups/live"),
            ("GET", "/groups/<task_group_id>"),
            ("GET", "/groups/<task_group_id>/live"),
            ("POST", "/groups/<task_group_id>/retry"),
            ("POST", "/groups/<task_group_id>/cancel"),
            ("GET", "/tasks/<task_id>"),
            ("GET", "/tasks/<task_id>/live"),
            ("POST", "/tasks/<task_id>/cancel"),
        ]
    },
}


def test_every_route_declares_its_scope(app: Flask) -> None:
    declared = {}
    for rule in app.url_map.iter_rules():
        declaration = declaration_of(app.view_functions[rule.endpoint])
        assert declaration is not None, rule.rule
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            declared[method, rule.rule] = declaration.scope
    assert declared == EXPECTED


def test_a_read_token_cannot_post(app: Flask) -> None:
    with app_state(app).database.write() as conn:
        token = issue_token(conn, get_or_create_user(conn, "reader"), scopes=["read"])
    reader = Caller(app.test_client(), token)
    answer = reader.post("/v1/functions", {"function": "AAAA"})
    assert answer.status_code == 403, answer.get_json()
    error = answer.get_json()["error"]
    assert error["code"] == "insufficient_scope"
    assert error["details"]["required_scope"] == "submit"
    assert reader.ok("get", "/v1/endpoints") == {"endpoints": []}
    assert reader.ok("post", "/v1/results", {"task_ids": []}) == {"results": [], "pending": []}


def test_an_undeclared_route_fails_app_creation(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stray = Blueprint("stray", __name__)

    @stray.get("/v1/stray")
    def undeclared() -> dict[str, Any]:
        return {}

    monkeypatch.setattr(app_module, "BLUEPRINTS", [*app_module.BLUEPRINTS, stray])
    with pytest.raises(RouteError, match=r"GET /v1/stray declare no scope"):
        make_app()


def test_options_needs_only_the_read_scope(app: Flask) -> None:
    with app_state(app).database.write() as conn:
        token = issue_token(conn, get_or_create_user(conn, "reader"), scopes=["read"])
    reader = Caller(app.test_client(), token)
    answer = reader.client.options("/v1/tasks", headers=reader.headers)
    assert answer.status_code == 200
    assert "POST" in answer.headers["Allow"]
    assert app.test_client().options("/v1/tasks").status_code == 401  # a token all the same
