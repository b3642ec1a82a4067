"""End to end: Bob, a user Alice's endpoint is shared with, cannot run code through arguments.

A real ``outpost-service serve``, the shared RabbitMQ and a real endpoint daemon owned by Alice
(local blocks, workers), shared with Bob with an allow-list of one function (``repr``).  Every
hostile argument payload would create a marker file if it were unpickled (or ``exec``-ed); the
file must never appear.  Bob's hand-crafted pickles are refused at ``POST /v1/tasks`` (422),
also when he claims ``"submitter": "owner"``; a pickle that gets past the service -- signed
with the service's own key as a buggy service would, or sealed so that the service cannot
read it -- is refused by the endpoint (the daemon, or the worker after opening the seal)
without being read; a JSON header over a pickle body is only invalid JSON; a signed task whose
``submitter`` was flipped to ``owner`` fails the signature check.  Bob's plain data works
through the SDK (tuples arrive as lists), Alice's pickled arguments still work.
"""

# The durability fixtures are imported below, so test arguments of the same names "redefine" them.
# ruff: noqa: F811

from __future__ import annotations

import base64
import concurrent.futures
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pika
import pytest
import requests
import sqlalchemy as sa

from outpost import Client, Executor
from outpost.errors import ArgumentsNotDataError
from outpost.executor.sealer import Sealer
from outpost.protocol import TaskEnvelope, deserialize, serialize_function
from outpost.protocol.envelopes import b64encode
from outpost.protocol.sealing import RESULT_KEY_FIELD
from outpost_service.store import tasks as task_store
from outpost_service.store.schema import users
from outpost_service.store.tasks import NewTask

from ..durability.campaign import database, wait_until
from ..durability.conftest import service, service_database, service_home  # noqa: F401
from ..e2e.stack import AMQP_URL, RunningService, make_endpoint
from .test_sec_shared_arguments import hostile_payloads, spoofed_json
from .test_sec_signed_tasks import service_signer


def value_of(client: Client, task_id: str) -> Any:
    """The task's value, decoded here (the test trusts its own endpoint)."""
    result = client.get_task(task_id)["result"]
    assert result["state"] == "success", result
    return deserialize(base64.b64decode(result["value"]))


def error_of(client: Client, task_id: str) -> dict[str, Any]:
    wait_until(lambda: client.get_task(task_id)["result"] is not None, 120, f"task {task_id}")
    result = client.get_task(task_id)["result"]
    assert result["state"] == "failed", result
    return dict(result["error"])


def test_a_shared_user_cannot_run_code_through_arguments_on_a_real_endpoint(
    service: RunningService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTPOST_HOME", str(tmp_path / "bob-home"))  # bob's sealing keys
    marker = tmp_path / "pwned"
    name = f"arg{uuid.uuid4().hex[:6]}"
    endpoint = make_endpoint(service, tmp_path / "endpoint", name)
    endpoint_id = endpoint.endpoint_id
    alice = Client(url=service.url, token=service.token)
    bob_token = service.create_user("bob")
    bob = Client(url=service.url, token=bob_token)
    try:
        allowed = alice.register_function(repr)
        alice.set_endpoint_policy(endpoint_id, ["bob"], allowed_functions=[allowed])
        assert bob.register_function(repr) == allowed

        # 1. hand-crafted payloads through the API: 422 naming the task and the rule
        for kind, payload in hostile_payloads(marker).items():
            task = {"function_id": allowed, "endpoint_id": endpoint_id,
                    "args": b64encode(payload), "submitter": "owner"}  # fmt: skip
            answer = requests.post(
                f"{service.url}/v1/tasks",
                json={"tasks": [task]},
                headers={"Authorization": f"Bearer {bob_token}"},
                timeout=30,
            )
            assert answer.status_code == 422, (kind, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "arguments_not_data" and error["details"]["index"] == 0
            assert error["message"].startswith("tasks[0]: ") and "JSON data" in error["message"]

        # 2. a JSON header over a pickle body passes the service (it declares JSON) ...
        [spoofed] = bob.submit_tasks(
            [{"function_id": allowed, "endpoint_id": endpoint_id,
              "args": b64encode(spoofed_json(marker))}]
        )  # fmt: skip
        # 3. ... and so does a sealed pickle: the service cannot read it, the worker can
        group = str(uuid.uuid4())
        sealer = Sealer(bob, group)
        pickle = hostile_payloads(marker)["pickle"]
        [sealed] = bob.submit_tasks(
            [{"function_id": allowed, "endpoint_id": endpoint_id, "task_group_id": group,
              "args": b64encode(sealer.seal_args(pickle, endpoint_id, allowed, group)),
              "resource_specification": {RESULT_KEY_FIELD: sealer.public_key}}]
        )  # fmt: skip

        # 4. a service that failed to check: bob's stored task, signed with the service's key
        signer = service_signer(service)
        function = serialize_function(repr)
        bypass = str(uuid.uuid4())
        with database(service).begin() as conn:
            bob_id = conn.execute(sa.select(users.c.user_id).where(users.c.name == "bob")).scalar()
            row = NewTask(bypass, endpoint_id, allowed, pickle)
            task_store.insert_many(conn, int(bob_id), [row], time.time())
            task_store.mark_published(conn, [bypass])

        def envelope(task_id: str, submitter: str) -> TaskEnvelope:
            return TaskEnvelope(task_id, allowed, function, pickle, endpoint_id,
                                submitter=submitter)  # fmt: skip

        # 5. a signed task of bob's whose submitter was flipped to "owner" afterwards
        flipped = signer.sign(envelope(str(uuid.uuid4()), "shared").to_dict())
        flipped["submitter"] = "owner"
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            for body in (
                signer.signed_bytes(envelope(bypass, "shared")),
                json.dumps(flipped).encode(),
            ):
                channel.basic_publish(
                    f"{service.amqp_prefix}.tasks", endpoint_id, body,
                    pika.BasicProperties(delivery_mode=2),
                )  # fmt: skip
            dead = f"{service.amqp_prefix}.dead"
            wait_until(
                lambda: channel.queue_declare(dead, passive=True).method.message_count == 1,
                60,
                "the flipped task in the dead-letter queue",
            )
        finally:
            connection.close()

        # 6. plain data through the SDK works for bob (tuples arrive as lists); what is not
        # data is refused at submit(); alice's arguments stay pickles
        with Executor(endpoint_id, client=bob) as ex:
            data = ex.submit(repr, [(1, 2), {"k": [None, True, 2.5, "s"]}])
            with pytest.raises(ArgumentsNotDataError, match="belongs to alice") as refused:
                ex.submit(repr, {1, 2})
            assert "args[0] is a builtins.set" in str(refused.value)
        with Executor(endpoint_id, client=alice) as ex:
            pickled = ex.submit(repr, (1, 2))
        concurrent.futures.wait([data, pickled], timeout=120)
        assert value_of(bob, str(data.task_id)) == "[[1, 2], {'k': [None, True, 2.5, 's']}]"
        assert value_of(alice, str(pickled.task_id)) == "(1, 2)"

        spoof_error = error_of(bob, spoofed)
        assert spoof_error["reason"] == "serialization"
        assert "not valid JSON" in spoof_error["message"], spoof_error
        assert error_of(bob, sealed)["reason"] == "arguments_not_data"  # message sealed for bob
        bypass_error = error_of(bob, bypass)
        assert bypass_error["reason"] == "arguments_not_data", bypass_error
        assert "JSON data" in bypass_error["message"] and "was not run" in bypass_error["message"]
        log = (endpoint.home / "endpoints" / name / "endpoint.log").read_text()
        assert log.count("refused by the signature check") == 1
        assert not marker.exists()
    finally:
        endpoint.run("stop", name, check=False)
        alice.close()
        bob.close()
