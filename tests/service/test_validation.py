"""Bad input gets a clear 4xx in the one error shape, never a 5xx, and changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask import Flask

from .conftest import Caller, args_b64, b64, row_counts

VALID_FUNCTION_ID = "0" * 64


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    return error


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"[1, 2", b'{"name": NaN}', b"\xff\xfe", b"{" * 3 + b"}" * 3],
)
def test_malformed_json_is_400(app: Flask, alice: Caller, body: bytes) -> None:
    before = row_counts(app)
    response = alice.client.post(
        "/v1/endpoints", data=body, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert_error(response, 400, "malformed_json")
    assert row_counts(app) == before


def test_deeply_nested_json_is_400(app: Flask, alice: Caller) -> None:
    depth = 100_000
    body = b'{"name": ' + b"[" * depth + b"]" * depth + b"}"
    response = alice.client.post("/v1/tasks", data=body, headers=alice.headers)
    error = assert_error(response, 400, "malformed_json")
    assert "nested" in error["message"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/endpoints", [1, 2], None),
        ("/v1/endpoints", {"name": 5}, "name"),
        ("/v1/endpoints", {"name": "bad name!"}, "name"),
        ("/v1/endpoints", {"name": "ep", "endpoint_id": "nope"}, "endpoint_id"),
        ("/v1/endpoints", {"name": "ep", "metadata": [1]}, "metadata"),
        ("/v1/functions", {}, "function"),
        ("/v1/functions", {"function": "%%%not-base64"}, "function"),
        ("/v1/functions", {"function": 12}, "function"),
        ("/v1/tasks", {"tasks": "x"}, "tasks"),
        ("/v1/tasks", {"tasks": [7]}, "tasks[0]"),
        (
            "/v1/tasks",
            {"tasks": [{"endpoint_id": str(uuid.uuid4()), "args": ""}]},
            "tasks[0].function_id",
        ),
        (
            "/v1/tasks",
            {"tasks": [{"function_id": VALID_FUNCTION_ID, "endpoint_id": "x", "args": ""}]},
            "tasks[0].endpoint_id",
        ),
        (
            "/v1/tasks",
            {
                "tasks": [
                    {
                        "function_id": VALID_FUNCTION_ID,
                        "endpoint_id": str(uuid.uuid4()),
                        "args": "a",
                        "resource_specification": 3,
                    }
                ]
            },
            "tasks[0].resource_specification",
        ),
        ("/v1/results", {"task_ids": "x"}, "task_ids"),
        ("/v1/results", {"task_ids": [str(uuid.uuid4())], "wait": 61}, "wait"),
        ("/v1/results", {"task_ids": [str(uuid.uuid4())], "wait": True}, "wait"),
        ("/v1/results", {"task_ids": ["not-a-uuid"]}, "task_ids[0]"),
    ],
)
def test_wrongly_typed_input_is_422(
    app: Flask, alice: Caller, path: str, body: Any, field: str | None
) -> None:
    before = row_counts(app)
    error = assert_error(alice.post(path, body), 422)
    if field is not None:
        assert error["details"]["field"] == field
        assert field in error["message"]
    assert row_counts(app) == before


def test_malformed_ids_in_paths_are_422(alice: Caller) -> None:
    assert_error(alice.get("/v1/tasks/not-a-uuid"), 422, "invalid_field")
    assert_error(alice.get("/v1/endpoints/123"), 422, "invalid_field")
    assert_error(alice.get("/v1/task_groups/xyz/tasks"), 422, "invalid_field")


def test_unknown_route_and_method(alice: Caller) -> None:
    assert_error(alice.get("/v1/nothing-here"), 404, "not_found")
    error = assert_error(alice.delete("/v1/tasks"), 405, "method_not_allowed")
    assert error["details"]["allowed_methods"] == ["OPTIONS", "POST"]
    assert_error(alice.client.put("/health"), 405)


def test_payload_over_the_limit_is_413_naming_the_limit(make_app: Any) -> None:
    app = make_app(payload_limit=1000)
    from .conftest import new_token

    caller = Caller(app.test_client(), new_token(app, "alice"))
    before = row_counts(app)
    for size in (1001, 5000):
        error = assert_error(caller.post("/v1/functions", {"function": b64(b"x" * size)}), 413)
        assert "1,000 bytes" in error["message"]
        assert error["details"]["limit"] == 1000
    task = {
        "function_id": VALID_FUNCTION_ID,
        "endpoint_id": str(uuid.uuid4()),
        "args": b64(b"y" * 2000),
    }
    error = assert_error(caller.post("/v1/tasks", {"tasks": [task]}), 413, "payload_too_large")
    assert error["details"]["field"] == "tasks[0].args"
    assert row_counts(app) == before


def test_body_over_max_content_length_is_413(make_app: Any) -> None:
    app = make_app(max_content_length=10_000)
    from .conftest import new_token

    caller = Caller(app.test_client(), new_token(app, "alice"))
    error = assert_error(
        caller.post("/v1/functions", {"function": b64(b"x" * 20_000)}), 413, "payload_too_large"
    )
    assert error["details"]["limit"] == 10_000
    assert "10,000 bytes" in error["message"]


def test_batch_over_the_maximum_is_refused(make_app: Any) -> None:
    app = make_app(max_batch=3)
    from .conftest import new_token

    caller = Caller(app.test_client(), new_token(app, "alice"))
    tasks = [
        {"function_id": VALID_FUNCTION_ID, "endpoint_id": str(uuid.uuid4()), "args": args_b64(i)}
        for i in range(4)
    ]
    error = assert_error(caller.post("/v1/tasks", {"tasks": tasks}), 422, "batch_too_large")
    assert error["details"] == {"count": 4, "max": 3}


def test_submit_to_unknown_endpoint_is_404_and_writes_nothing(app: Flask, alice: Caller) -> None:
    function_id = alice.register_function()
    before = row_counts(app)
    stranger = str(uuid.uuid4())
    response = alice.post(
        "/v1/tasks",
        {"tasks": [{"function_id": function_id, "endpoint_id": stranger, "args": args_b64(1)}]},
    )
    error = assert_error(response, 404, "not_found")
    assert error["details"]["endpoint_ids"] == [stranger]
    assert row_counts(app) == before


def test_submit_with_unknown_function_is_404_and_writes_nothing(app: Flask, alice: Caller) -> None:
    endpoint_id = alice.register_endpoint()
    before = row_counts(app)
    response = alice.post(
        "/v1/tasks",
        {
            "tasks": [
                {"function_id": VALID_FUNCTION_ID, "endpoint_id": endpoint_id, "args": args_b64(1)}
            ]
        },
    )
    error = assert_error(response, 404)
    assert error["details"]["function_ids"] == [VALID_FUNCTION_ID]
    assert row_counts(app) == before


def test_other_users_objects_are_invisible(app: Flask, alice: Caller, bob: Caller) -> None:
    endpoint_id = alice.register_endpoint("shared-name")
    function_id = alice.register_function()
    (task_id,) = alice.submit(endpoint_id, function_id, (-1,))
    group = str(uuid.uuid4())
    alice.submit(endpoint_id, function_id, (-2,), task_group_id=group)
    before = row_counts(app)

    assert_error(bob.get(f"/v1/endpoints/{endpoint_id}"), 404)
    assert_error(bob.delete(f"/v1/endpoints/{endpoint_id}"), 404)
    assert_error(bob.get(f"/v1/tasks/{task_id}"), 404)
    assert_error(bob.post(f"/v1/tasks/{task_id}/cancel"), 404)
    assert_error(bob.post("/v1/results", {"task_ids": [task_id]}), 404)
    task = {"function_id": function_id, "endpoint_id": endpoint_id, "args": args_b64(3)}
    assert_error(bob.post("/v1/tasks", {"tasks": [task]}), 404)
    response = bob.post("/v1/endpoints", {"name": "mine", "endpoint_id": endpoint_id})
    assert_error(response, 409)
    assert bob.ok("get", "/v1/endpoints") == {"endpoints": []}
    for route in ("tasks", "summary"):  # alice's group is not bob's: the same 404 as unknown
        answer = assert_error(bob.get(f"/v1/task_groups/{group}/{route}"), 404)
        assert f"no task group {group} among yours" in answer["message"]
    assert_error(bob.post(f"/v1/task_groups/{group}/retry", {"states": ["failed"]}), 404)
    assert row_counts(app) == before
    # Bob may use the same endpoint name for his own endpoint: names are per owner.
    assert bob.register_endpoint("shared-name") != endpoint_id


def test_deeply_nested_objects_in_fields_are_422(app: Flask, alice: Caller) -> None:
    nested: Any = {}
    for _ in range(40):
        nested = {"a": [nested]}
    before = row_counts(app)
    error = assert_error(alice.post("/v1/endpoints", {"name": "ep", "metadata": nested}), 422)
    assert error["details"]["field"] == "metadata"
    assert row_counts(app) == before


def test_results_for_no_tasks_answer_at_once(alice: Caller) -> None:
    assert alice.ok("post", "/v1/results", {"task_ids": [], "wait": 60}) == {
        "results": [],
        "pending": [],
    }
