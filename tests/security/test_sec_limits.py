"""Limits: request rate per token (429 + Retry-After), payload and body sizes (413), and
names/ids validated (422) -- each answered with the one JSON error shape."""

from __future__ import annotations

from typing import Any

import pytest

from outpost_service.ratelimit import RateLimiter

from .conftest import caller


def test_bucket_refills_at_the_rate() -> None:
    limiter = RateLimiter(rate=10, burst=3)
    assert [limiter.take("k", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k", now=0.0) == pytest.approx(0.1)
    assert limiter.take("other", now=0.0) == 0.0  # buckets are per key
    assert limiter.take("k", now=0.1) == 0.0  # one request refilled after 1/rate s


def test_over_the_limit_is_a_429_with_retry_after(make_app: Any) -> None:
    app = make_app(rate_limit=1, rate_burst=3)
    alice, bob = caller(app, "alice"), caller(app, "bob")
    answers = [alice.get("/v1/endpoints") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    refused = answers[-1]
    assert refused.headers["Retry-After"] == "1"
    error = refused.get_json()["error"]
    assert error["code"] == "rate_limited"
    assert "1 requests per second" in error["message"]
    assert error["details"] == {"retry_after": 1}
    # another token (another user) is not affected
    assert bob.get("/v1/endpoints").status_code == 200


def test_rate_limit_zero_disables_it(make_app: Any) -> None:
    alice = caller(make_app(rate_limit=0, rate_burst=1), "alice")
    assert {alice.get("/v1/endpoints").status_code for _ in range(20)} == {200}


def test_oversized_body_and_payload_are_413_naming_the_limit(make_app: Any) -> None:
    app = make_app(max_content_length=2048, payload_limit=100)
    alice = caller(app, "alice")
    response = alice.post("/v1/functions", {"function": "A" * 4096})
    assert response.status_code == 413
    assert response.get_json()["error"]["details"]["limit"] == 2048
    response = alice.post("/v1/functions", {"function": "QUFB" * 60})  # 180 bytes decoded
    assert response.status_code == 413, response.get_json()
    assert "100" in response.get_json()["error"]["message"]


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/endpoints", {"name": "x" * 1000}),
        ("/v1/endpoints", {"name": "bad/name\n"}),
        ("/v1/endpoints", {"name": "ok", "endpoint_id": "not-a-uuid"}),
        ("/v1/tasks", {"tasks": [{"function_id": "nope", "endpoint_id": "../x", "args": ""}]}),
    ],
)
def test_names_and_ids_are_validated(make_app: Any, path: str, body: dict[str, Any]) -> None:
    alice = caller(make_app(), "alice")
    response = alice.post(path, body)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"]["code"] in ("invalid_request", "invalid_field")


def test_unknown_endpoint_id_in_a_path_is_a_clear_error(make_app: Any) -> None:
    alice = caller(make_app(), "alice")
    response = alice.get("/v1/endpoints/not-a-uuid")
    assert response.status_code in (404, 422)
    assert "endpoint_id" in response.get_json()["error"]["message"]
