"""The OpenAPI document describes every route the app serves, with every method."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient


def test_every_url_rule_is_documented(app: Flask, client: FlaskClient) -> None:
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    paths = document["paths"]
    # the dashboard's HTML pages (scope ui) are not API routes
    assert not [p for p in paths if p.startswith("/ui")]
    rules = [r for r in app.url_map.iter_rules() if not r.rule.startswith("/ui/")]
    assert rules
    for rule in rules:
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        assert path in paths, f"{rule.rule} is missing from /openapi.json"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in paths[path], f"{method} {rule.rule} is undocumented"
    documented = {(p, m) for p, ops in paths.items() for m in ops}
    served = {
        (re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", r.rule), m.lower())
        for r in rules
        for m in r.methods - {"HEAD", "OPTIONS"}
    }
    assert documented == served, "the document describes routes the app does not serve"
