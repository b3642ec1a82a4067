"""The task consumer's checks, one by one: each refuses what it should, with its reason, and
the pipeline runs them in its declared order, the first objection deciding.

Message checks answer with the reason the message is dead-lettered; task checks with the failed
result that answers the task.  The last test drives the consumer's message handler with a
recording channel to show that a message check's objection is a reject without requeue.
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from outpost.protocol import (
    CancelRequest,
    ResultEnvelope,
    TaskEnvelope,
    TaskState,
    function_id_for,
    serialize,
)
from outpost.protocol.data_only import dump_data
from outpost.protocol.signing import Signer, Verifier, new_private_key
from outpost_endpoint.amqp.checks import (
    AddressedHere,
    ArgumentsAreData,
    BelongsOnTaskQueue,
    Checks,
    FunctionAllowed,
    FunctionIdMatches,
    NotCancelled,
    NotExpired,
    SignedByService,
    TaskCheck,
    endpoint_checks,
)
from outpost_endpoint.journal import Journal

from . import tasks
from .doubles import offline_consumer

ENDPOINT = str(uuid.uuid4())
OTHER = str(uuid.uuid4())
SIGNER = Signer(new_private_key())


def task(**changes: Any) -> TaskEnvelope:
    """A task computing ``square(3)`` for this endpoint, with ``changes`` to its fields."""
    function = serialize(tasks.square)
    fields: dict[str, Any] = {
        "task_id": str(uuid.uuid4()),
        "function_id": function_id_for(function),
        "function": function,
        "args": serialize(((3,), {})),
        "endpoint_id": ENDPOINT,
    }
    return TaskEnvelope(**{**fields, **changes})


def reason_of(answer: ResultEnvelope | None) -> str | None:
    if answer is None:
        return None
    assert answer.state in (TaskState.FAILED, TaskState.CANCELLED)
    assert answer.error is not None
    return answer.error.reason


# ---------------------------------------------------------------------- message checks
def test_only_tasks_and_cancel_requests_belong_on_a_task_queue() -> None:
    check = BelongsOnTaskQueue()
    result = ResultEnvelope(task_id="t", endpoint_id=ENDPOINT, state=TaskState.SUCCESS)
    assert check.problem(result, result.to_dict()) == (
        "a 'result' message does not belong on a task queue"
    )
    for message in (task(), CancelRequest(endpoint_id=ENDPOINT, task_ids=["t"])):
        assert check.problem(message, message.to_dict()) is None


def test_the_signature_check_wants_the_services_signature_for_this_endpoint() -> None:
    check = SignedByService(Verifier(SIGNER.public_key), ENDPOINT)
    unsigned = task()
    assert "refused by the signature check: message is not signed" in str(
        check.problem(unsigned, unsigned.to_dict())
    )
    signed = SIGNER.sign(unsigned.to_dict())
    assert check.problem(unsigned, signed) is None
    tampered = {**signed, "args": signed["function"]}
    assert "refused by the signature check" in str(check.problem(unsigned, tampered))
    elsewhere = SignedByService(Verifier(SIGNER.public_key), OTHER)
    assert "refused by the signature check" in str(elsewhere.problem(unsigned, signed))


def test_the_address_check_refuses_another_endpoints_tasks_and_cancels() -> None:
    check = AddressedHere(ENDPOINT)
    stray = task(endpoint_id=OTHER)
    assert check.problem(stray, stray.to_dict()) == (
        f"task {stray.task_id} is addressed to endpoint {OTHER}, not this one ({ENDPOINT})"
    )
    cancel = CancelRequest(endpoint_id=OTHER, task_ids=["t"])
    assert check.problem(cancel, cancel.to_dict()) == (
        f"cancel request is addressed to endpoint {OTHER}, not this one"
    )
    mine = task()
    assert check.problem(mine, mine.to_dict()) is None


# ---------------------------------------------------------------------- task checks
def test_a_function_whose_bytes_do_not_match_its_id_is_refused() -> None:
    assert FunctionIdMatches().refusal(task()) is None
    forged = task(function_id="0" * 64)
    assert reason_of(FunctionIdMatches().refusal(forged)) == "function_mismatch"


def test_the_allow_list_refuses_other_functions() -> None:
    allowed = task()
    check = FunctionAllowed([allowed.function_id])
    assert check.refusal(allowed) is None
    other = serialize(tasks.counted_square)
    refused = check.refusal(task(function=other, function_id=function_id_for(other)))
    assert reason_of(refused) == "function_not_allowed"


def test_a_shared_users_arguments_must_be_data() -> None:
    check = ArgumentsAreData()
    assert check.refusal(task()) is None  # the owner's pickles
    assert check.refusal(task(submitter="shared", args=dump_data([[3], {}], limit=None))) is None
    assert reason_of(check.refusal(task(submitter="shared"))) == "arguments_not_data"


def test_a_task_past_its_deadline_is_refused() -> None:
    check = NotExpired()
    assert check.refusal(task()) is None  # no deadline
    fresh = task(resource_specification={"expires_after": 3600})
    assert check.refusal(fresh) is None
    late = task(resource_specification={"expires_after": 1}, created_at=time.time() - 60)
    assert reason_of(check.refusal(late)) == "expired"


def test_a_task_cancelled_before_it_arrived_is_answered_cancelled_once() -> None:
    check = NotCancelled(size=2)
    cancelled = task()
    check.remember(cancelled.task_id)
    assert reason_of(check.refusal(cancelled)) == "cancelled"
    assert check.refusal(cancelled) is None  # forgotten once answered
    first, second, third = task(), task(), task()
    for remembered in (first, second, third):
        check.remember(remembered.task_id)
    assert check.refusal(first) is None  # the oldest is forgotten past ``size``
    assert reason_of(check.refusal(third)) == "cancelled"


# ---------------------------------------------------------------------- the pipeline
def test_the_checks_run_in_their_declared_order() -> None:
    full = endpoint_checks(ENDPOINT, verifier=Verifier(SIGNER.public_key), allowed_functions=["f"])
    assert [c.name for c in full.messages] == ["kind", "signature", "address"]
    assert [c.name for c in full.tasks] == [
        "function_id",
        "allow_list",
        "data_only",
        "expiry",
        "cancel",
    ]
    plain = endpoint_checks(ENDPOINT)  # what the configuration leaves out is not declared
    assert [c.name for c in plain.messages] == ["kind", "address"]
    assert [c.name for c in plain.tasks] == [
        "function_id",
        "data_only",
        "expiry",
        "cancel",
    ]


def test_the_first_objection_decides() -> None:
    cancelled = NotCancelled()
    checks = endpoint_checks(
        ENDPOINT,
        verifier=Verifier(SIGNER.public_key),
        allowed_functions=[],
        cancelled=cancelled,
    )
    stray = task(endpoint_id=OTHER)  # unsigned too: the signature check comes first
    assert "signature check" in str(checks.problem(stray, stray.to_dict()))
    forged = task(function_id="0" * 64)  # not allowed either: the id is checked first
    assert reason_of(checks.refusal(forged)) == "function_mismatch"
    refused = task()
    cancelled.remember(refused.task_id)  # cancelled too: the allow-list answers
    assert reason_of(checks.refusal(refused)) == "function_not_allowed"


def test_a_check_is_one_class_and_one_line() -> None:
    class NoGroups(TaskCheck):
        name = "no_groups"

        def refusal(self, task: TaskEnvelope) -> ResultEnvelope | None:
            if task.task_group_id is None:
                return None
            return ResultEnvelope(
                task_id=task.task_id, endpoint_id=task.endpoint_id, state=TaskState.FAILED
            )

    base = endpoint_checks(ENDPOINT)
    checks = Checks(base.messages, (*base.tasks, NoGroups()))
    assert checks.refusal(task()) is None
    grouped = checks.refusal(task(task_group_id="g"))
    assert grouped is not None and grouped.state is TaskState.FAILED


class Channel:
    """Records acks and rejects."""

    def __init__(self) -> None:
        self.acks: list[int] = []
        self.rejects: list[tuple[int, bool]] = []

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.acks.append(tag)

    def basic_reject(self, tag: int, requeue: bool = True) -> None:
        self.rejects.append((tag, requeue))


class Method:
    def __init__(self, tag: int) -> None:
        self.delivery_tag = tag


def test_a_message_a_check_refuses_is_dead_lettered_with_its_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal(tmp_path / "journal.db")
    with offline_consumer(journal, ENDPOINT, workers=1, prefetch=4) as (handler, _results):
        channel = Channel()
        stray = task(endpoint_id=OTHER)
        with caplog.at_level(logging.ERROR):
            handler._on_message(channel, Method(1), None, stray.to_bytes())
        assert channel.rejects == [(1, False)]
        assert "is addressed to endpoint" in caplog.text and "dead-lettered" in caplog.text
        cancel = CancelRequest(endpoint_id=ENDPOINT, task_ids=["t"])
        handler._on_message(channel, Method(2), None, cancel.to_bytes())
        assert channel.acks == [2]
        handler._on_message(channel, Method(3), None, task().to_bytes())
        assert len(handler.window.waiting) == 1  # passed: waits to be journaled
        assert journal.state(stray.task_id) is None
