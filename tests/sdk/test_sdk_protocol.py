"""Round trips of outpost.protocol: serialization strategies, limits, versions, envelopes."""

from __future__ import annotations

import json
import platform

import pytest

from outpost.errors import (
    MalformedMessageError,
    PayloadTooLargeError,
    ProtocolVersionError,
    SerializationError,
    SerializerVersionMismatch,
)
from outpost.protocol import (
    PROTOCOL_VERSION,
    CancelRequest,
    EndpointStatus,
    ErrorInfo,
    ResultEnvelope,
    Strategy,
    TaskEnvelope,
    TaskState,
    decode_message,
    deserialize,
    function_id_for,
    serialize,
    serialize_function,
)
from outpost.protocol.serialize import MAGIC

MAIN_SOURCE = """
def make_adder(n):
    offset = 100
    def add(x):
        return x + n + offset
    return add

class Point:
    def __init__(self, x):
        self.x = x
"""


def main_namespace() -> dict[str, object]:
    """Definitions whose ``__module__`` is ``__main__``, as in a user's script or notebook."""
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec(compile(MAIN_SOURCE, "<script>", "exec"), namespace)
    return namespace


def square(x: int) -> int:
    return x * x


def test_lambda_round_trip() -> None:
    fn = deserialize(serialize_function(lambda x, y=2: x**y))
    assert fn(3) == 9


def test_main_closure_and_class_ship_by_value() -> None:
    namespace = main_namespace()
    add = namespace["make_adder"](5)  # type: ignore[operator]
    point = namespace["Point"](7)  # type: ignore[operator]
    assert deserialize(serialize(add))(1) == 106
    rebuilt = deserialize(serialize(point))
    assert rebuilt.x == 7 and type(rebuilt).__name__ == "Point"


def test_source_strategy_rebuilds_a_named_function() -> None:
    payload = serialize_function(square, Strategy.SOURCE)
    assert b"def square" in payload
    assert deserialize(payload)(9) == 81


def test_source_strategy_refuses_lambdas() -> None:
    with pytest.raises(SerializationError, match="named function"):
        serialize_function(lambda: 1, Strategy.SOURCE)


def test_json_strategy() -> None:
    value = {"a": [1, 2.5, "x", None, True]}
    payload = serialize(value, Strategy.JSON)
    assert json.loads(payload.split(b"\n", 1)[1]) == value
    assert deserialize(payload) == value
    with pytest.raises(SerializationError, match="JSON"):
        serialize({1, 2}, Strategy.JSON)


def test_function_id_is_content_address() -> None:
    assert function_id_for(serialize_function(square)) == function_id_for(
        serialize_function(square)
    )


def test_size_limit() -> None:
    with pytest.raises(PayloadTooLargeError) as info:
        serialize(b"x" * 5000, limit=1000)
    assert info.value.limit == 1000 and info.value.size > 5000
    assert "limit" in str(info.value)
    assert deserialize(serialize(b"x" * 5000, limit=None)) == b"x" * 5000


def test_unpicklable_value() -> None:
    import threading

    with pytest.raises(SerializationError, match="cannot pickle"):
        serialize(threading.Lock())


def test_forged_header_of_another_python_names_both_versions() -> None:
    header = json.dumps({"py": "2.7.18", "cp": "0.0.1"}).encode()
    payload = MAGIC + b"P" + header + b"\n" + b"this is not a pickle"
    with pytest.raises(SerializerVersionMismatch) as info:
        deserialize(payload)
    message = str(info.value)
    assert "2.7.18" in message and platform.python_version() in message


def test_corrupt_payload_with_same_versions_is_plain_serialization_error() -> None:
    good = serialize(1)
    with pytest.raises(SerializationError) as info:
        deserialize(good[: good.index(b"\n") + 1] + b"garbage")
    assert not isinstance(info.value, SerializerVersionMismatch)


@pytest.mark.parametrize("payload", [b"", b"not outpost", MAGIC + b"Z{}\n", MAGIC + b"P{"])
def test_malformed_payloads(payload: bytes) -> None:
    with pytest.raises(SerializationError):
        deserialize(payload)


# ---------------------------------------------------------------------------- envelopes
def make_task() -> TaskEnvelope:
    return TaskEnvelope(
        task_id="t1",
        function_id="f1",
        function=serialize_function(square),
        args=serialize(((3,), {})),
        endpoint_id="e1",
        task_group_id="g1",
        resource_specification={"num_nodes": 2},
    )


def test_task_envelope_round_trip() -> None:
    task = make_task()
    again = TaskEnvelope.from_bytes(task.to_bytes())
    assert again == task
    args, kwargs = deserialize(again.args)
    assert deserialize(again.function)(*args, **kwargs) == 9


def test_result_envelope_round_trip_with_error() -> None:
    error = ErrorInfo(
        type="KeyError", message="'k'", traceback="tb", payload=serialize(KeyError("k"))
    )
    result = ResultEnvelope("t1", "e1", TaskState.FAILED, error=error, timing={"run": 1.5})
    again = decode_message(result.to_bytes())
    assert again == result


def test_other_envelopes_round_trip() -> None:
    for message in (EndpointStatus("e1", details={"workers": 4}), CancelRequest("e1", ["t1"])):
        assert decode_message(message.to_bytes()) == message
        assert decode_message(message.to_dict()) == message


def test_newer_protocol_says_upgrade_here() -> None:
    data = make_task().to_dict() | {"v": PROTOCOL_VERSION + 1}
    with pytest.raises(ProtocolVersionError, match="upgrade outpost here"):
        decode_message(json.dumps(data))


def test_older_protocol_says_upgrade_sender() -> None:
    data = make_task().to_dict() | {"v": PROTOCOL_VERSION - 1}
    with pytest.raises(ProtocolVersionError, match="sending side"):
        decode_message(data)


@pytest.mark.parametrize(
    "body, match",
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"v": PROTOCOL_VERSION, "type": "nope"}), "unknown message type"),
        (json.dumps({"v": PROTOCOL_VERSION, "type": "task"}), "lacks required field"),
    ],
)
def test_malformed_messages(body: bytes | str, match: str) -> None:
    with pytest.raises(MalformedMessageError, match=match):
        decode_message(body)


def test_bad_base64_and_non_final_result_state() -> None:
    bad_args = make_task().to_dict() | {"args": "%%%"}
    with pytest.raises(MalformedMessageError, match="base64"):
        decode_message(bad_args)
    running = ResultEnvelope("t1", "e1", TaskState.SUCCESS).to_dict() | {"state": "running"}
    with pytest.raises(MalformedMessageError, match="final state"):
        decode_message(running)


def test_from_bytes_checks_the_type() -> None:
    with pytest.raises(MalformedMessageError, match="expected a 'task' message"):
        TaskEnvelope.from_bytes(CancelRequest("e1", ["t1"]).to_bytes())
