"""Registering an endpoint that heartbeats: 409 unless forced (issue 11, item 2).

Registering rotates the endpoint's RabbitMQ password and closes its connections, so a second
registration would cut off the instance that serves.  The heartbeats are recorded here the way
the ingest consumer records them; the end-to-end test with real daemons is
tests/e2e/test_single_instance.py.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from outpost_service.store import endpoints as endpoint_store

from .conftest import Caller, app_state, row_counts


def heartbeat(app: Flask, endpoint_id: str, state: str = "online", **details: Any) -> None:
    with app_state(app).database.write() as conn:
        endpoint_store.record_heartbeats(conn, {endpoint_id: (state, details)})


def test_registration_is_refused_while_the_endpoint_heartbeats(app: Flask, alice: Caller) -> None:
    endpoint_id = alice.register_endpoint("busy")
    heartbeat(app, endpoint_id, hostname="login1", pid=4242)
    before = row_counts(app)
    for body in ({"name": "busy"}, {"name": "busy", "endpoint_id": endpoint_id}):
        answer = alice.post("/v1/endpoints", body)
        assert answer.status_code == 409
        error = answer.get_json()["error"]
        assert error["code"] == "conflict"
        message = error["message"]
        assert endpoint_id in message and "login1" in message and "pid 4242" in message
        assert "outpost-endpoint stop" in message and "force" in message
        assert error["details"] == {
            "endpoint_id": endpoint_id,
            "connected": True,
            "last_heartbeat": error["details"]["last_heartbeat"],
            "hostname": "login1",
            "pid": 4242,
        }
    assert row_counts(app) == before


def test_force_registers_anyway(app: Flask, alice: Caller) -> None:
    endpoint_id = alice.register_endpoint("busy")
    heartbeat(app, endpoint_id, hostname="login1", pid=4242)
    assert alice.register_endpoint("busy", force=True) == endpoint_id


def test_an_endpoint_that_said_offline_registers_again(app: Flask, alice: Caller) -> None:
    endpoint_id = alice.register_endpoint("stopped")
    heartbeat(app, endpoint_id, "offline", hostname="login1", pid=4242)
    assert alice.register_endpoint("stopped") == endpoint_id


def test_force_must_be_a_boolean(app: Flask, alice: Caller) -> None:
    alice.register_endpoint("typed")
    answer = alice.post("/v1/endpoints", {"name": "typed", "force": "yes"})
    assert answer.status_code == 422
    assert "force" in answer.get_json()["error"]["message"]
