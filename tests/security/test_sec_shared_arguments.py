"""A shared user must not run code through pickled arguments: the rule, piece by piece.

Alice owns an endpoint and shares it with Bob.  A task runs as Alice's Unix account, and
unpickling arguments can run code, so tasks that do not come from the owner may carry only JSON
data as arguments (``outpost.protocol.data_only``).  Checked here with real parts: the service
app on real RabbitMQ (it sets the signed ``submitter`` field, a client cannot; it refuses
non-data arguments with 422 and stores and publishes nothing), the endpoint's own refusal and
the worker's decoding (a hostile payload whose unpickling would create a file: the file never
appears), the strict data check of the SDK.  End to end through a real service and endpoint
daemon: ``test_sec_shared_arguments_e2e.py``.
"""

# The service fixtures are imported below, so test arguments of the same names "redefine" them.
# ruff: noqa: F811

from __future__ import annotations

import concurrent.futures
import enum
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from outpost import Client, Executor
from outpost.errors import ArgumentsNotDataError, SerializationError
from outpost.protocol import (
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
from outpost.protocol.data_only import MAGIC, data_problem, dump_data, load_data, payload_strategy
from outpost.protocol.envelopes import b64encode
from outpost.protocol.sealing import SEAL_MAGIC
from outpost.protocol.signing import SignatureError, Verifier
from outpost_endpoint.amqp.checks import endpoint_checks
from outpost_endpoint.engine.high_throughput import wire
from outpost_endpoint.execution import run_task
from outpost_service.store import tasks as task_store
from outpost_service.store.tasks import NewTask
from outpost_service.store.users import get_or_create_user
from outpost_service.submission import envelopes_for

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
    row_counts,
)
from ..service.test_tasks import take
from .test_sec_sharing import service_url  # noqa: F401


class Touch:
    """Unpickling this runs ``open(path, "w")``: the file appearing means code ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.path, "w"))


def hostile_payloads(marker: Path) -> dict[str, bytes]:
    """Argument payloads that are not JSON data; two would run code if decoded."""
    pickled = serialize(((Touch(marker),), {}))
    source = (
        MAGIC + b'S{"name": "f"}\n' + f"def f():\n    pass\nopen({str(marker)!r}, 'w')\n".encode()
    )
    return {"pickle": pickled, "source": source, "raw pickle": pickled[len(MAGIC) + 1 :]}


def spoofed_json(marker: Path) -> bytes:
    """Declares the JSON format, carries a pickle: decoded as JSON it is only invalid."""
    pickled = serialize(((Touch(marker),), {}))
    body = pickled[pickled.index(b"\n") + 1 :]
    return MAGIC + b'J{"py": "3.12", "cp": "3.1.1", "strategy": "pickle"}\n' + body


def data_b64(*args: Any, **kwargs: Any) -> str:
    return b64encode(serialize([list(args), kwargs], Strategy.JSON)) or ""


def share(alice: Caller, endpoint_id: str) -> None:
    answer = alice.client.put(
        f"/v1/endpoints/{endpoint_id}/policy",
        json={"allowed_users": ["bob"]},
        headers=alice.headers,
    )
    assert answer.status_code == 200, answer.get_json()


# --------------------------------------------------------------------------- the service
def test_the_service_sets_the_signed_submitter_and_a_client_cannot(
    app: Flask, alice: Caller, bob: Caller, amqp_channel: Any
) -> None:
    endpoint_id = alice.register_endpoint("polaris")
    function_id = alice.register_function(abs)
    share(alice, endpoint_id)
    task = {"function_id": function_id, "endpoint_id": endpoint_id, "args": data_b64(-1)}
    # bob claims to be the owner: the field is not part of the API and changes nothing
    [bob_task] = bob.ok("post", "/v1/tasks", {"tasks": [task | {"submitter": "owner"}]})["task_ids"]
    [alice_task] = alice.submit(endpoint_id, function_id, (-2,))  # a pickle: hers
    queue = app_state(app).topology.task_queue(endpoint_id)
    bodies = [body for _properties, body in take(amqp_channel, queue, 2)]
    envelopes = {e.task_id: e for e in map(decode_message, bodies)}
    assert isinstance(envelopes[bob_task], TaskEnvelope)
    assert envelopes[bob_task].submitter == "shared" and envelopes[bob_task].args_must_be_data
    assert envelopes[alice_task].submitter == "owner"  # type: ignore[attr-defined]

    signer = app_state(app).publisher.signer
    assert signer is not None
    verifier = Verifier(signer.public_key)
    for body in bodies:
        verifier.verify(body, endpoint_id)
    [bob_body] = [b for b in bodies if bob_task.encode() in b]
    forged = bob_body.replace(b'"submitter":"shared"', b'"submitter":"owner"')
    assert forged != bob_body
    with pytest.raises(SignatureError, match="does not match"):
        verifier.verify(forged, endpoint_id)


def test_shared_users_non_data_arguments_are_refused_with_422_and_change_nothing(
    app: Flask, alice: Caller, bob: Caller, amqp_channel: Any, tmp_path: Path
) -> None:
    endpoint_id = alice.register_endpoint("polaris")
    function_id = alice.register_function(abs)
    share(alice, endpoint_id)
    fine = {"function_id": function_id, "endpoint_id": endpoint_id, "args": data_b64(-1)}
    before = row_counts(app)
    for kind, payload in hostile_payloads(tmp_path / "pwned").items():
        bad = fine | {"args": b64encode(payload)}
        answer = bob.post("/v1/tasks", {"tasks": [fine, bad]})
        assert answer.status_code == 422, (kind, answer.get_json())
        error = answer.get_json()["error"]
        assert error["code"] == "arguments_not_data"
        assert error["message"].startswith("tasks[1]: ") and "JSON data" in error["message"]
        assert error["details"]["index"] == 1 and error["details"]["endpoint_id"] == endpoint_id
    assert row_counts(app) == before
    assert not (tmp_path / "pwned").exists()

    # the owner's pickles, a shared user's data and sealed payloads (checked by the endpoint's
    # worker once opened) are accepted; the refused batches published nothing
    sealed = fine | {"args": b64encode(SEAL_MAGIC + bytes(80))}
    [sealed_id, data_id] = bob.ok("post", "/v1/tasks", {"tasks": [sealed, fine]})["task_ids"]
    [owner_id] = alice.submit(endpoint_id, function_id, ((1, 2),))
    queue = app_state(app).topology.task_queue(endpoint_id)
    taken = [decode_message(body).task_id for _p, body in take(amqp_channel, queue, 3)]
    assert taken == [sealed_id, data_id, owner_id]


def test_retries_and_republished_tasks_keep_the_rule(
    app: Flask, alice: Caller, bob: Caller, amqp_channel: Any, tmp_path: Path
) -> None:
    """A pickle of bob's stored before this rule: its retry is refused, and its republished
    envelope says ``shared`` (so the endpoint refuses it too)."""
    endpoint_id = alice.register_endpoint("polaris")
    function_id = alice.register_function(abs)
    share(alice, endpoint_id)
    state = app_state(app)
    group = str(uuid.uuid4())
    old = NewTask(
        task_id=str(uuid.uuid4()),
        endpoint_id=endpoint_id,
        function_id=function_id,
        args=hostile_payloads(tmp_path / "pwned")["pickle"],
        task_group_id=group,
    )
    with state.database.write() as conn:
        task_store.insert_many(conn, get_or_create_user(conn, "bob").user_id, [old], 1.0)
    with state.database.read() as conn:
        rows = task_store.unpublished(conn, 0.0, 10, task_ids=[old.task_id])
    [envelope] = envelopes_for(state, rows)
    assert envelope.submitter == "shared"
    assert refusal(envelope) is not None

    with state.database.write() as conn:
        task_store.mark_published(conn, [old.task_id])
        task_store.finish(
            conn,
            [ResultEnvelope(task_id=old.task_id, endpoint_id=endpoint_id, state=TaskState.FAILED)],
            3600.0,
        )
    before = row_counts(app)
    refused = bob.post(f"/v1/task_groups/{group}/retry", {"states": ["failed"]})
    assert refused.status_code == 422, refused.get_json()
    error = refused.get_json()["error"]
    assert error["code"] == "arguments_not_data" and "retried tasks[0]" in error["message"]
    assert row_counts(app) == before


# --------------------------------------------------------------------------- the SDK
def test_the_sdk_sends_json_to_shared_endpoints_and_refuses_what_is_not_data(
    app: Flask,
    alice: Caller,
    bob: Caller,
    amqp_channel: Any,
    service_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("OUTPOST_HOME", str(tmp_path / "home"))
    endpoint_id = alice.register_endpoint("polaris")
    share(alice, endpoint_id)
    bob_client, alice_client = Client(service_url, bob.token), Client(service_url, alice.token)
    bob_ex = Executor(endpoint_id, client=bob_client)
    alice_ex = Executor(endpoint_id, client=alice_client)
    try:
        data = bob_ex.submit(repr, (1, 2), key={"k": [None, 2.5]})
        with pytest.raises(ArgumentsNotDataError, match="belongs to alice") as refused:
            bob_ex.submit(repr, [1, {2: "a"}])
        message = str(refused.value)
        assert "args[0][1] has a int key 2" in message and "ask alice to run the task" in message
        parent: concurrent.futures.Future[Any] = concurrent.futures.Future()
        child = bob_ex.submit(repr, parent)  # a dependency: checked when its value is known
        parent.set_result({1, 2})
        with pytest.raises(ArgumentsNotDataError, match=r"args\[0\] is a builtins.set"):
            child.result(timeout=30)
        owners = alice_ex.submit(repr, (1, 2), {3})  # any value: pickled, as before
        queue = app_state(app).topology.task_queue(endpoint_id)
        taken = [decode_message(body) for _p, body in take(amqp_channel, queue, 2)]
        envelopes = {e.task_id: e for e in taken if isinstance(e, TaskEnvelope)}
        assert data.task_id_ready.wait(30) and owners.task_id_ready.wait(30)
        bobs, alices = envelopes[str(data.task_id)], envelopes[str(owners.task_id)]
        assert (bobs.submitter, alices.submitter) == ("shared", "owner")
        assert load_data(bobs.args) == [[[1, 2]], {"key": {"k": [None, 2.5]}}]
        assert payload_strategy(alices.args) is Strategy.PICKLE
        assert deserialize(alices.args) == (((1, 2), {3}), {})
    finally:
        bob_ex.shutdown(wait=False, cancel_futures=True)
        alice_ex.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- the endpoint
def refusal(task: TaskEnvelope) -> ResultEnvelope | None:
    """The endpoint's answer to ``task`` instead of running it (its task checks), or None."""
    return endpoint_checks(task.endpoint_id).refusal(task)


def shared_task(args: bytes, submitter: str | None = "shared") -> TaskEnvelope:
    function = serialize_function(repr)
    return TaskEnvelope(
        task_id=str(uuid.uuid4()),
        function_id=function_id_for(function),
        function=function,
        args=args,
        endpoint_id=str(uuid.uuid4()),
        submitter=submitter,
    )


def test_the_endpoint_refuses_non_data_arguments_of_shared_users_before_reading_them(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "pwned"
    for kind, payload in hostile_payloads(marker).items():
        for submitter in ("shared", "someone-new"):  # an unknown relation fails closed
            answer = refusal(shared_task(payload, submitter))
            assert answer is not None, kind
            assert answer.error is not None and answer.error.reason == "arguments_not_data"
            assert "JSON data" in answer.error.message and "was not run" in answer.error.message
        # the worker decodes them as data only, too (a task that skipped the daemon's check)
        result = run_task(shared_task(payload), payload_limit=None)
        assert result.state is TaskState.FAILED and result.error is not None
        assert result.error.reason == "arguments_not_data", result.error
    # a JSON header over a pickle body is just invalid JSON: never unpickled
    spoofed = run_task(shared_task(spoofed_json(marker)), payload_limit=None)
    assert spoofed.error is not None and spoofed.error.reason == "serialization"
    assert "not valid JSON" in spoofed.error.message
    assert not marker.exists()

    # plain data runs; the owner's pickles (and messages of older services) are untouched
    data = run_task(shared_task(dump_data([[[1, "a", None]], {}], limit=None)), None)
    assert data.state is TaskState.SUCCESS, data.error
    assert refusal(shared_task(serialize((((1, 2),), {})), "owner")) is None
    owners = run_task(shared_task(serialize((((1, 2),), {})), None), None)
    assert owners.state is TaskState.SUCCESS and b"(1, 2)" in (owners.value or b"")
    # sealed arguments are left to the worker, which opens them first
    assert refusal(shared_task(SEAL_MAGIC + bytes(80))) is None


def test_the_submitter_crosses_the_interchange_wire() -> None:
    task = shared_task(b"x")
    again = wire.task_from_header(wire.loads(wire.task_header(task)), task.function, task.args)
    assert again.submitter == "shared" and again.args_must_be_data
    assert TaskEnvelope.from_bytes(task.to_bytes()).submitter == "shared"
    legacy = shared_task(b"x", None)
    assert "submitter" not in legacy.to_dict()  # older messages are unchanged
    assert not TaskEnvelope.from_bytes(legacy.to_bytes()).args_must_be_data


# --------------------------------------------------------------------------- the data rule
class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    "value, expected",
    [
        ({1, 2}, "args[0] is a builtins.set"),
        (Colour.RED, "args[0] is a tests.security.test_sec_shared_arguments.Colour"),
        ({1: "a"}, "args[0] has a int key 1"),
        ({"a": [float("nan")]}, "args[0]['a'][0] is nan"),
        (b"bytes", "args[0] is a builtins.bytes"),
        ([[[[object()]]]], "args[0][0][0][0][0] is a builtins.object"),
    ],
)
def test_data_problems_name_the_value_and_where_it_is(value: Any, expected: str) -> None:
    problem = data_problem([value], "args")
    assert problem is not None and expected in problem, problem
    with pytest.raises(ArgumentsNotDataError, match="plain JSON data"):
        dump_data([value], limit=None)


def test_plain_data_round_trips_and_tuples_become_lists() -> None:
    value = [(1, 2.5), {"k": [True, None, "s"]}, -3]
    assert data_problem(value) is None
    assert load_data(dump_data(value, limit=None)) == [[1, 2.5], {"k": [True, None, "s"]}, -3]
    with pytest.raises(SerializationError, match="nested more than"):
        dump_data(nested(200), limit=None)
    with pytest.raises(SerializationError, match="not valid JSON"):
        load_data(MAGIC + b"J{}\n" + b"[" * 100_000)


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value
