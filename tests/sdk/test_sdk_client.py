"""Client against the fake service over real HTTP: routes, error mapping, retries."""

from __future__ import annotations

import contextlib
import socket

import pytest
from sdk_fake_service import TOKEN, FakeService

from outpost import Client
from outpost.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    ResultNotReady,
    ServiceError,
    ServiceUnavailableError,
)
from outpost.protocol import TaskState, serialize
from outpost.protocol.envelopes import b64encode

ENDPOINT = "ep-1"


def submit(client: Client, fn: object, *args: object) -> str:
    function_id = client.register_function(fn)  # type: ignore[arg-type]
    task = {
        "function_id": function_id,
        "endpoint_id": ENDPOINT,
        "args": b64encode(serialize((args, {}))),
    }
    return client.submit_tasks([task])[0]


def test_client_from_environment(service: FakeService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTPOST_URL", service.url + "/")
    monkeypatch.setenv("OUTPOST_TOKEN", TOKEN)
    client = Client()
    assert client.url == service.url
    assert client.list_endpoints() == []


def test_health_needs_no_token(service: FakeService) -> None:
    assert Client.anonymous(service.url).health()["status"] == "ok"


def test_register_function_once_per_function_object(service: FakeService, client: Client) -> None:
    def double(x: int) -> int:
        return 2 * x

    first = client.register_function(double)
    assert client.register_function(double) == first
    assert client.register_function(pow) != first
    assert client.register_function(pow) == client.register_function(pow)
    assert service.requests.count(("POST", "/v1/functions")) == 2


def test_result_value_and_remote_exception(service: FakeService, client: Client) -> None:
    ok = submit(client, pow, 2, 5)
    bad = submit(client, divmod, 1, 0)
    results, pending = client.get_results([ok, bad], wait=10)
    while pending:  # long-poll returns when at least one is ready
        more, pending = client.get_results(pending, wait=10)
        results.update(more)
    assert results[ok].state is TaskState.SUCCESS
    assert client.get_result(ok) == 32
    with pytest.raises(ZeroDivisionError):
        client.get_result(bad)
    assert client.get_task(ok)["state"] == "success"


def test_result_not_ready(service: FakeService, client: Client) -> None:
    service.hold()
    task_id = submit(client, pow, 2, 5)
    with pytest.raises(ResultNotReady, match=task_id):
        client.get_result(task_id)
    assert client.get_results([task_id], wait=0) == ({}, [task_id])
    assert client.cancel_task(task_id) == "cancelled"


def test_task_group(service: FakeService, client: Client) -> None:
    function_id = client.register_function(pow)
    args = b64encode(serialize(((2, 2), {})))
    task = {"function_id": function_id, "endpoint_id": ENDPOINT, "args": args, "task_group_id": "g"}
    ids = client.submit_tasks([task, task])
    assert sorted(t["task_id"] for t in client.get_task_group("g")) == sorted(ids)


def test_endpoints(client: Client) -> None:
    endpoint_id = client.register_endpoint("laptop", metadata={"os": "linux"})["endpoint_id"]
    assert client.get_endpoint(endpoint_id)["name"] == "laptop"
    assert [e["endpoint_id"] for e in client.list_endpoints()] == [endpoint_id]
    assert client.delete_endpoint(endpoint_id) == endpoint_id
    with pytest.raises(NotFoundError) as info:
        client.get_endpoint(endpoint_id)
    assert info.value.status == 404 and info.value.code == "not_found"


def test_bad_token_is_authentication_error(service: FakeService) -> None:
    with pytest.raises(AuthenticationError, match="outpost login") as info:
        Client(service.url, "wrong").list_endpoints()
    assert info.value.status == 401


def test_bad_input_is_invalid_request(client: Client) -> None:
    with pytest.raises(InvalidRequestError) as info:
        client.submit_tasks([{"endpoint_id": ENDPOINT}])
    assert info.value.status == 400


def test_unreachable_service_names_the_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(ServiceUnavailableError, match=f"{url}/v1/endpoints.*OUTPOST_URL"):
        Client(url, TOKEN, retries=0).list_endpoints()


def test_idempotent_calls_are_retried_on_503(service: FakeService) -> None:
    client = Client(service.url, TOKEN, retries=2)
    service.fail_next[("GET", "/v1/endpoints")] = 2
    assert client.list_endpoints() == []
    assert service.requests.count(("GET", "/v1/endpoints")) == 3


def test_task_submission_is_retried_on_503_under_one_request_id(service: FakeService) -> None:
    client = Client(service.url, TOKEN, retries=3)
    service.fail_next[("POST", "/v1/tasks")] = 2
    function_id = client.register_function(pow)
    task = {
        "function_id": function_id,
        "endpoint_id": ENDPOINT,
        "args": b64encode(serialize(((1, 1), {}))),
    }
    ids = client.submit_tasks([task])
    attempts = service.attempt_request_ids
    assert len(attempts) == 3, attempts  # two 503s, then the retry that got through
    assert list(service.tasks) == ids
    (request_id,) = service.request_ids
    assert request_id  # the service dedups a retry that did reach it by this id
    assert attempts == [request_id] * 3, "every attempt must carry the batch's one request id"
    client.submit_tasks([task])
    assert service.request_ids[1] != request_id  # a new call is a new request


def test_rate_limited_calls_are_retried_even_when_not_idempotent(service: FakeService) -> None:
    client = Client(service.url, TOKEN, retries=2)
    service.fail_status = 429  # the service refused before doing anything: a retry is safe
    path = f"/v1/endpoints/{ENDPOINT}"
    service.fail_next[("DELETE", path)] = 1
    # DELETE is not idempotent for the client; the fake may not know this endpoint (404):
    # what matters is that it was asked twice
    with contextlib.suppress(NotFoundError):
        client.delete_endpoint(ENDPOINT)
    assert service.requests.count(("DELETE", path)) == 2  # ...yet the 429 was retried


def test_server_errors_after_retries(service: FakeService) -> None:
    service.fail_next[("GET", "/v1/endpoints")] = 5
    with pytest.raises(ServiceUnavailableError, match="retry later"):
        Client(service.url, TOKEN, retries=1).list_endpoints()


def test_function_cache_handles_odd_callables(service: FakeService, client: Client) -> None:
    class Slotted:
        __slots__ = ()  # cannot be weakly referenced

        def __call__(self) -> int:
            return 1

    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self) -> int:
            return 2

    slotted, unhashable = Slotted(), Unhashable()
    assert client.register_function(slotted) == client.register_function(slotted)
    assert client.register_function(unhashable) == client.register_function(unhashable)
    assert service.requests.count(("POST", "/v1/functions")) == 3  # unhashable: not cached


def test_get_result_of_a_cancelled_task(service: FakeService, client: Client) -> None:
    from outpost.errors import TaskCancelledError

    service.hold()
    task_id = submit(client, pow, 2, 5)
    client.cancel_task(task_id)
    with pytest.raises(TaskCancelledError, match=task_id):
        client.get_result(task_id)


def test_an_answer_that_breaks_the_api_is_a_clear_error(
    service: FakeService, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers are read through outpost.protocol.api: a missing or mistyped field is named."""
    routed = service.route

    def without_pending(method: str, path: str, body: object) -> tuple[int, object]:
        status, answer = routed(method, path, body)
        if path == "/v1/results" and isinstance(answer, dict):
            answer = {**answer, "pending": "all of them"}
        return status, answer

    monkeypatch.setattr(service, "route", without_pending)
    task_id = submit(client, pow, 2, 5)
    with pytest.raises(ServiceError, match=r"POST /v1/results answered with pending: ") as caught:
        client.poll_results([task_id])
    assert caught.value.code == "bad_response"
    assert "older or newer" in str(caught.value)
