"""Endpoint metadata and heartbeat details are capped (``max_metadata_bytes``, 64 KiB).

Before the cap a 30 MiB ``metadata`` was accepted by ``POST /v1/endpoints``, stored, and then
sent back in every ``GET /v1/endpoints`` of the owner and of everyone the endpoint is shared
with.  Now registration answers 413 ``payload_too_large`` naming the field, the size and the
limit, and stores nothing; ingest stores an oversized heartbeat's state but not its details.
"""

# The service fixtures are imported below, so test arguments of the same names "redefine" them.
# ruff: noqa: F811

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from flask import Flask

from outpost.errors import ConfigurationError
from outpost.protocol import EndpointStatus
from outpost_service.config import DEFAULT_MAX_METADATA_BYTES, ServiceConfig

from ..service.conftest import (
    amqp_channel,  # noqa: F401
    running_ingest,
)
from ..service.conftest import app_state as state_of
from .conftest import caller


def test_a_30_mib_metadata_is_refused_with_413_and_nothing_is_stored(make_app: Any) -> None:
    alice = caller(make_app(), "alice")
    blob = "x" * (30 * 1024 * 1024)
    answer = alice.post("/v1/endpoints", {"name": "big", "metadata": {"blob": blob}})
    assert answer.status_code == 413, answer.status_code
    error = answer.get_json()["error"]
    assert error["code"] == "payload_too_large"
    assert error["details"]["field"] == "metadata"
    assert error["details"]["limit"] == DEFAULT_MAX_METADATA_BYTES == 64 * 1024
    assert error["details"]["size"] > 30 * 1024 * 1024
    assert "metadata" in error["message"] and "max_metadata_bytes" in error["message"]
    assert alice.get("/v1/endpoints").get_json()["endpoints"] == []


def test_the_limit_is_configurable_and_applies_to_re_registration(make_app: Any) -> None:
    alice = caller(make_app(max_metadata_bytes=1000), "alice")
    fits = {"host": "login1", "note": "y" * 900}
    endpoint_id = alice.register_endpoint("ep", metadata=fits)
    over = {"host": "login1", "note": "y" * 1000}
    answer = alice.post("/v1/endpoints", {"name": "ep", "metadata": over})
    assert answer.status_code == 413
    assert answer.get_json()["error"]["details"]["limit"] == 1000
    shown = alice.get(f"/v1/endpoints/{endpoint_id}").get_json()
    assert shown["metadata"] == fits  # the refused re-registration changed nothing


def test_max_metadata_bytes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTPOST_MAX_METADATA_BYTES", "2048")
    assert ServiceConfig.from_env().max_metadata_bytes == 2048
    monkeypatch.setenv("OUTPOST_MAX_METADATA_BYTES", "lots")
    with pytest.raises(ConfigurationError, match=r"OUTPOST_MAX_METADATA_BYTES.*'lots'"):
        ServiceConfig.from_env()
    with pytest.raises(ConfigurationError, match="max_metadata_bytes must be positive"):
        ServiceConfig(max_metadata_bytes=0)


@pytest.fixture
def small_app(make_app: Any) -> Flask:
    made: Flask = make_app(max_metadata_bytes=4096)
    return made


@pytest.fixture
def ingest(small_app: Flask) -> Iterator[Any]:
    with running_ingest(small_app) as consumer:
        yield consumer


def test_an_oversized_heartbeat_keeps_the_endpoint_online_without_its_details(
    small_app: Flask, ingest: Any, amqp_channel: Any
) -> None:
    alice = caller(small_app, "alice")
    endpoint_id = alice.register_endpoint(f"hb{uuid.uuid4().hex[:6]}")
    exchange = state_of(small_app).topology.result_exchange
    huge = EndpointStatus(endpoint_id, details={"blob": "z" * 100_000})
    amqp_channel.basic_publish(
        exchange, f"{endpoint_id}.status", huge.to_bytes(), pika.BasicProperties(delivery_mode=2)
    )

    def shown() -> dict[str, Any]:
        return dict(alice.get(f"/v1/endpoints/{endpoint_id}").get_json())

    endpoint = _eventually(shown, lambda e: e["details"])
    assert endpoint["state"] == "online"
    assert "blob" not in endpoint["details"]
    assert "over the limit of 4,096 bytes" in endpoint["details"]["error"]


def _eventually(get: Any, ok: Any, timeout: float = 30) -> Any:
    """Poll ``get()`` until ``ok(value)`` (an observable condition, not a fixed sleep)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"condition not met within {timeout} s: {value!r}"
        time.sleep(0.05)
