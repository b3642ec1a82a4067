"""The protocol's messages are pydantic models: one declaration per message gives validation on
decode (errors naming the field, the value and what it must be), the dict and JSON forms, the
engine's frame header and the JSON Schema."""

from __future__ import annotations

import json
from typing import Any

import pytest

from outpost.errors import MalformedMessageError
from outpost.protocol import (
    CancelRequest,
    EndpointStatus,
    ErrorInfo,
    ResultEnvelope,
    TaskEnvelope,
    TaskRequest,
    TaskState,
    decode_message,
)
from outpost_endpoint.engine.high_throughput import wire


def task() -> TaskEnvelope:
    return TaskEnvelope(
        task_id="t1", function_id="f1", function=b"\x00fn", args=b"\xffargs", endpoint_id="e1"
    )


def result() -> ResultEnvelope:
    error = ErrorInfo(type="KeyError", message="'k'", payload=b"\x80")
    return ResultEnvelope("t1", "e1", TaskState.FAILED, error=error, timing={"run": 1.5})


MESSAGES = {
    "task": task,
    "result": result,
    "status": lambda: EndpointStatus("e1", details={"workers": 4}),
    "cancel": lambda: CancelRequest("e1", ["t1"]),
}


@pytest.mark.parametrize(
    "kind, field, value, expected",
    [
        ("task", "task_id", 7, "field 'task_id' must be a valid string, got 7"),
        ("task", "args", "%%%", "field 'args' must be standard base64 text, got '%%%'"),
        ("task", "args", 12, "field 'args' must be standard base64 text, got 12"),
        ("task", "created_at", "yesterday", "field 'created_at' must be a valid number"),
        ("task", "resource_specification", [1], "field 'resource_specification'"),
        ("result", "state", "bogus", "field 'state' must be 'received', 'waiting', 'queued'"),
        ("result", "state", "running", "field 'state' must be a final state"),
        ("result", "value", "YQ", "field 'value' must be standard base64 text, got 'YQ'"),
        ("result", "error", {"type": "E"}, "lacks required field 'error.message'"),
        ("result", "timing", {"run": "slow"}, "field 'timing.run' must be a valid number"),
        ("status", "details", "busy", "field 'details' must be a valid dictionary"),
        ("cancel", "task_ids", ["t1", 2], "field 'task_ids.1' must be a valid string, got 2"),
    ],
)
def test_a_malformed_field_is_named_with_its_value(
    kind: str, field: str, value: Any, expected: str
) -> None:
    data = MESSAGES[kind]().to_dict() | {field: value}
    for body in (data, json.dumps(data).encode()):  # the dict and the bytes paths say the same
        with pytest.raises(MalformedMessageError, match=f"^'{kind}' message .*") as info:
            decode_message(body)
        assert expected in str(info.value)


@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_a_missing_field_is_named_with_a_near_miss(kind: str) -> None:
    data = MESSAGES[kind]().to_dict()
    data["endpointid"] = data.pop("endpoint_id")
    with pytest.raises(MalformedMessageError) as info:
        decode_message(data)
    assert "lacks required field 'endpoint_id' (did you mean 'endpointid'?)" in str(info.value)


def test_an_unknown_type_lists_the_known_ones() -> None:
    with pytest.raises(MalformedMessageError) as info:
        decode_message({"v": 1, "type": "tsak"})
    assert "'tsak'; expected one of ['cancel', 'result', 'status', 'task']" in str(info.value)
    assert "did you mean 'task'" in str(info.value)


def test_a_huge_bad_value_is_cut_short_in_the_error() -> None:
    data = task().to_dict() | {"args": "%" * 8_000_000}
    with pytest.raises(MalformedMessageError) as info:
        decode_message(data)
    assert len(str(info.value)) < 400


@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_every_message_round_trips_through_dict_bytes_and_schema(kind: str) -> None:
    message = MESSAGES[kind]()
    assert decode_message(message.to_bytes()) == message
    assert decode_message(message.to_dict()) == message
    assert json.loads(message.to_bytes()) == message.to_dict()
    schema = type(message).model_json_schema()
    assert schema["properties"]["type"]["const"] == kind
    assert set(schema["properties"]) == set(message.to_dict()) | _omitted(message)


def _omitted(message: Any) -> set[str]:
    """Fields left out of the dict while None (the additive signature fields, the parents'
    values of a task without dependencies)."""
    return {"submitter", "issued_at", "sig", "parent_values"} & set(type(message).model_fields)


def test_text_utf8_cannot_hold_and_nan_survive_the_round_trip() -> None:
    error = ErrorInfo(type="E", message="undecodable \udc80 byte")
    failed = ResultEnvelope("t1", "e1", TaskState.FAILED, error=error, timing={"a": float("inf")})
    again = decode_message(failed.to_bytes())
    assert isinstance(again, ResultEnvelope) and again.error == error
    assert again.timing == {"a": float("inf")}


def test_payloads_are_standard_base64_and_described_so_in_the_schema() -> None:
    data = task().to_dict()
    assert data["function"] == "AGZu" and data["args"] == "/2FyZ3M="  # '/' and '+', not URL-safe
    schema = TaskEnvelope.model_json_schema()["properties"]
    assert schema["args"]["contentEncoding"] == "base64" and schema["args"]["type"] == "string"


def test_unset_signature_fields_stay_out_of_the_message() -> None:
    assert {"submitter", "issued_at", "sig"}.isdisjoint(task().to_dict())
    signed = task().model_copy(update={"issued_at": 1.0, "sig": "c2ln"})
    assert signed.to_dict()["sig"] == "c2ln" and decode_message(signed.to_bytes()) == signed


def test_unknown_keys_from_a_later_version_are_ignored() -> None:
    original = task()
    assert decode_message(original.to_dict() | {"priority": 5}) == original


def test_positional_arguments_follow_the_declared_order() -> None:
    assert CancelRequest("e1", ["t1"]) == CancelRequest(endpoint_id="e1", task_ids=["t1"])
    with pytest.raises(TypeError, match="two values for 'endpoint_id'"):
        CancelRequest("e1", endpoint_id="e2", task_ids=[])
    with pytest.raises(TypeError, match="at most 4 positional"):
        CancelRequest("e1", ["t1"], 3.0, "c2ln", "more")


class TaskWithPriority(TaskEnvelope):
    """The task envelope with one field more: declared once, below."""

    priority: int = 0


def test_a_new_field_is_declared_once_and_appears_everywhere() -> None:
    prioritized = TaskWithPriority(**task().model_dump(exclude={"v", "type"}), priority=3)
    assert prioritized.to_dict()["priority"] == 3  # dict (and so the signed form)
    assert json.loads(prioritized.to_bytes())["priority"] == 3  # AMQP body
    assert TaskWithPriority.from_dict(json.loads(prioritized.to_bytes())) == prioritized  # decode
    header = json.loads(wire.task_header(prioritized))  # the engine's frame header
    assert header["priority"] == 3 and "args" not in header and "function" not in header
    assert TaskWithPriority.model_json_schema()["properties"]["priority"]["type"] == "integer"
    with pytest.raises(MalformedMessageError, match="field 'priority' must be a valid integer"):
        TaskWithPriority.from_dict(prioritized.to_dict() | {"priority": "high"})
    # the subclass does not take over the decoding of plain tasks
    assert type(decode_message(prioritized.to_bytes())) is TaskEnvelope


def test_the_engine_header_round_trips_with_the_payload_frames() -> None:
    original = task()
    header = json.loads(wire.task_header(original, walltime=5.0))
    assert header["walltime"] == 5.0
    assert wire.task_from_header(header, original.function, original.args) == original
    frames = wire.result_frames(result())
    assert wire.result_from_frames(*frames) == result()


def test_a_task_request_is_the_part_of_the_envelope_a_client_chooses() -> None:
    request = TaskRequest(function_id="f1", endpoint_id="e1", args=b"\xffargs")
    assert request.to_dict() == {
        "function_id": "f1",
        "endpoint_id": "e1",
        "args": "/2FyZ3M=",
        "task_group_id": None,
        "resource_specification": {},
        "depends_on": [],
    }
    envelope = TaskEnvelope.model_json_schema()["properties"]
    for name, field in TaskRequest.model_json_schema()["properties"].items():
        assert field == envelope[name]
