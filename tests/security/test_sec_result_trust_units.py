"""The pieces of result trust (issue 12, item 2) one by one: the data-only deserializer cannot
be talked into unpickling, what endpoints write as JSON, the service's marking and withholding
of results (SQLite and PostgreSQL, real RabbitMQ), and sealed error details."""

# The service fixtures are imported below, so test arguments of the same names "redefine" them.
# ruff: noqa: F811

from __future__ import annotations

import base64
import enum
import json
import pickle
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from outpost.errors import SealingError, SerializationError, UntrustedResultError
from outpost.protocol import (
    ErrorInfo,
    ResultEnvelope,
    Strategy,
    TaskState,
    deserialize,
    is_plain_data,
    payload_strategy,
    serialize,
    serialize_result,
)
from outpost.protocol.sealing import pack_error_details, unpack_error_details
from outpost.protocol.serialize import MAGIC
from outpost.result_trust import Origin, load_value, origin_of
from outpost_service.result_trust import mark_result
from outpost_service.store import tasks as task_store

from ..service.conftest import (  # the service fixtures: both backends, real RabbitMQ
    Caller,
    alice,  # noqa: F401
    amqp_channel,  # noqa: F401
    amqp_prefix,  # noqa: F401
    app,  # noqa: F401
    app_state,
    bob,  # noqa: F401
    client,  # noqa: F401
    database_url,  # noqa: F401
    make_app,  # noqa: F401
    postgres_database,  # noqa: F401
)
from .result_trust_tasks import Booby


class Marker:
    """Loading its pickle creates ``path`` (a plain pickle, not cloudpickle)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.path),))


# --------------------------------------------------------------------------- the deserializer
def crafted(code: bytes, header: dict[str, Any], body: bytes) -> bytes:
    return MAGIC + code + json.dumps(header).encode() + b"\n" + body


@pytest.mark.parametrize(
    "payload_of",
    [
        # a pickle under its own code, with a header claiming JSON
        lambda p: crafted(b"P", {"strategy": "json", "py": "3"}, p),
        # source text (run by exec) instead of a pickle
        lambda p: crafted(b"S", {"name": "f", "strategy": "json"}, b"open(%r, 'w')\n" % p),
        # an ordinary pickle payload
        lambda p: MAGIC + b"P{}\n" + p,
    ],
)
def test_data_only_never_loads_code(payload_of: Any, tmp_path: Path) -> None:
    marker = tmp_path / "loaded"
    payload = payload_of(pickle.dumps(Marker(str(marker))))
    with pytest.raises(SerializationError, match="could run code; it was not loaded"):
        deserialize(payload, data_only=True)
    assert not marker.exists()
    # and the result rule refuses it before that, naming the endpoint
    envelope = ResultEnvelope(str(uuid.uuid4()), str(uuid.uuid4()), TaskState.SUCCESS, payload)
    origin = Origin(envelope.endpoint_id, owned=False, owner="alice")
    with pytest.raises(UntrustedResultError, match="owned by user 'alice'"):
        load_value(envelope, origin, trusted=False)
    assert not marker.exists()


def test_a_json_code_with_a_pickle_body_is_an_error_not_a_load(tmp_path: Path) -> None:
    marker = tmp_path / "loaded"
    payload = crafted(b"J", {"strategy": "pickle"}, pickle.dumps(Marker(str(marker))))
    assert payload_strategy(payload) is Strategy.JSON
    with pytest.raises(SerializationError, match="JSON payload is invalid"):
        deserialize(payload, data_only=True)
    assert not marker.exists()
    nested = MAGIC + b"J{}\n" + b"[" * 100_000 + b"]" * 100_000  # a JSON bomb: an error too
    with pytest.raises(SerializationError):
        deserialize(nested, data_only=True)


def test_the_control_a_trusted_load_runs_the_pickle(tmp_path: Path) -> None:
    """The crafted payloads above are live: loading one as trusted creates the marker."""
    marker = tmp_path / "loaded"
    deserialize(crafted(b"P", {"strategy": "json"}, pickle.dumps(Marker(str(marker)))))
    assert marker.exists()


def test_origin_counts_only_an_explicit_true_as_owned() -> None:
    assert origin_of({"endpoint_id": "e", "endpoint_owned": True}).owned
    for said in (None, False, "true", 1):
        assert not origin_of({"endpoint_id": "e", "endpoint_owned": said}).owned
    assert not origin_of({"endpoint_id": "e"}).owned  # an older service: not owned


# --------------------------------------------------------------------------- what endpoints write
def deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -(2**62), 1.5, "text", [], {}, [1, "a", None], {"a": [{"b": 1.0}]}],
)
def test_plain_data_is_written_as_json(value: Any) -> None:
    assert is_plain_data(value)
    payload = serialize_result(value)
    assert payload_strategy(payload) is Strategy.JSON
    loaded = deserialize(payload, data_only=True)
    assert loaded == value and type(loaded) is type(value)


@pytest.mark.parametrize(
    "value",
    [
        (1, 2),
        {1: "a"},
        {1, 2},
        b"bytes",
        float("nan"),
        float("inf"),
        10**5000,
        Colour.RED,
        OrderedDict(a=1),
        deep(70),
        [1, (2,)],
        {"a": Booby("/nowhere")},
    ],
    ids=lambda value: type(value).__name__,
)
def test_anything_else_is_pickled_unchanged(value: Any) -> None:
    payload = serialize_result(value)
    assert payload_strategy(payload) is Strategy.PICKLE


# --------------------------------------------------------------------------- sealed error details
def test_sealed_error_details_are_json_and_an_old_pickle_loads_only_when_trusted(
    tmp_path: Path,
) -> None:
    exc_payload = serialize(ValueError("x"))
    details = pack_error_details("msg", "tb", exc_payload)
    assert payload_strategy(details) is Strategy.JSON
    assert unpack_error_details(details, trusted=False) == ("msg", "tb", exc_payload)
    marker = tmp_path / "loaded"
    old = MAGIC + b"P{}\n" + pickle.dumps(("m", "t", None, Marker(str(marker))))
    message, _, payload = unpack_error_details(old, trusted=False)
    assert payload is None and "not trusted" in message and not marker.exists()
    with pytest.raises(SealingError):
        unpack_error_details(serialize(["m", "t", "not base64!"], Strategy.JSON), trusted=False)


# --------------------------------------------------------------------------- the service
def test_owned_results_are_marked_without_parsing() -> None:
    stored = ResultEnvelope(str(uuid.uuid4()), str(uuid.uuid4()), TaskState.SUCCESS).to_bytes()
    marked = mark_result(stored, owned=True, owner_name="", trusted=False)
    assert marked.startswith(stored[:-1]) and json.loads(marked)["endpoint_owned"] is True


def test_an_endpoint_cannot_claim_ownership_for_the_service() -> None:
    """Even if stored bytes carried a forged field, the service's own comes last and wins."""
    stored = ResultEnvelope(str(uuid.uuid4()), str(uuid.uuid4()), TaskState.SUCCESS).to_bytes()
    forged = stored[:-1] + b',"endpoint_owned":true}'
    assert json.loads(mark_result(forged, False, "alice", False))["endpoint_owned"] is False


def stored_result(caller: Caller, app: Flask, endpoint_id: str, function_id: str) -> list[str]:
    tasks = [  # arguments of a shared user's tasks are JSON data (docs/SECURITY.md)
        {
            "function_id": function_id,
            "endpoint_id": endpoint_id,
            "args": base64.b64encode(serialize([[x], {}], Strategy.JSON)).decode(),
        }
        for x in (1, 2)
    ]
    task_ids = list(caller.ok("post", "/v1/tasks", {"tasks": tasks})["task_ids"])
    pickled_error = ErrorInfo("builtins.ValueError", "bad", payload=serialize(ValueError("bad")))
    with app_state(app).database.write() as conn:
        task_store.finish(
            conn,
            [
                ResultEnvelope(task_ids[0], endpoint_id, TaskState.SUCCESS, serialize({1, 2})),
                ResultEnvelope(task_ids[1], endpoint_id, TaskState.FAILED, error=pickled_error),
            ],
            3600.0,
        )
    return task_ids


def test_the_service_marks_and_withholds_by_caller(app: Flask, alice: Caller, bob: Caller) -> None:
    endpoint_id = alice.register_endpoint("shared")
    function_id = alice.register_function(abs)
    policy = {"allowed_users": ["bob"]}
    shared = alice.client.put(
        f"/v1/endpoints/{endpoint_id}/policy", json=policy, headers=alice.headers
    )
    assert shared.status_code == 200, shared.get_json()
    value_task, error_task = stored_result(bob, app, endpoint_id, function_id)
    own_value, _ = stored_result(alice, app, endpoint_id, function_id)

    answer = bob.ok("post", "/v1/results", {"task_ids": [value_task, error_task]})
    value, error = answer["results"]
    assert (value["endpoint_owned"], value["endpoint_owner"]) == (False, "alice")
    assert value["value"] is None and value["withheld"] == ["value"]
    assert error["error"]["payload"] is None and error["withheld"] == ["error.payload"]
    assert error["error"]["message"] == "bad"  # the text stays
    shown = bob.ok("get", f"/v1/tasks/{value_task}")["result"]
    assert shown["value"] is None and shown["endpoint_owner"] == "alice"

    trusted = bob.ok(
        "post", "/v1/results", {"task_ids": [value_task], "trust_endpoints": [endpoint_id]}
    )["results"][0]
    assert deserialize(base64.b64decode(trusted["value"])) == {1, 2}
    assert "withheld" not in trusted and trusted["endpoint_owned"] is False

    mine = alice.ok("post", "/v1/results", {"task_ids": [own_value]})["results"][0]
    assert mine["endpoint_owned"] is True and "endpoint_owner" not in mine
    assert deserialize(base64.b64decode(mine["value"])) == {1, 2}
    assert alice.ok("get", f"/v1/tasks/{own_value}")["result"]["endpoint_owned"] is True


@pytest.mark.parametrize(
    ("trust", "says"),
    [
        ("not-a-list", "must be a list"),
        (["nope"], "trust_endpoints[0]"),
        ([1], "trust_endpoints[0]"),
        ([str(uuid.uuid4())] * 1001, "at most 1000"),
    ],
)
def test_bad_trust_lists_are_refused_by_name(bob: Caller, trust: Any, says: str) -> None:
    answer = bob.post("/v1/results", {"task_ids": [], "trust_endpoints": trust})
    assert answer.status_code == 422, answer.get_json()
    error = answer.get_json()["error"]
    assert says in error["message"] or says in json.dumps(error["details"])
