"""The checks a message passes before the endpoint takes it, run in a declared order.

In the spirit of dramatiq's middleware: each check is a small object with one name and one
reason to refuse, and :func:`endpoint_checks` lists them in the order they run.  The first
check that objects decides; the others do not run.  Adding a check is one class and one line
in that list.

There are two stages, because a refusal means two different things:

* **Message checks** run on every decoded delivery, before the journal.  A message that fails
  one cannot be trusted or does not belong here (a result on a task queue, another endpoint's
  task, a signature that does not verify), so it is never journaled, run or answered: it is
  logged with the reason and rejected without requeue, so the queue dead-letters it and the
  endpoint keeps working.
* **Task checks** run on a trusted task each time it is about to enter the engine -- also when
  the journal replays it, since the configuration may have changed meanwhile.  A task that
  fails one is not run but *answered*: its result is a failure with a machine-readable reason
  (:mod:`outpost_endpoint.results`), so the user learns why.
"""

from __future__ import annotations

import abc
import collections
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from outpost.protocol import CancelRequest, ResultEnvelope, TaskEnvelope, function_id_for
from outpost.protocol.data_only import is_data_payload, payload_strategy
from outpost.protocol.sealing import is_sealed
from outpost.protocol.signing import SignatureError, Verifier
from outpost_endpoint.results import (
    arguments_not_data_result,
    cancelled_result,
    deadline_of,
    expired_result,
    function_mismatch_result,
    refused_function_result,
)

log = logging.getLogger(__name__)

#: How many cancelled-before-arrival task ids :class:`NotCancelled` remembers.
CANCEL_MEMORY = 10_000


# ---------------------------------------------------------------------- message checks
class MessageCheck(abc.ABC):
    """A reason to dead-letter a delivery before it is journaled."""

    name: ClassVar[str]

    @abc.abstractmethod
    def problem(self, message: object, data: dict[str, Any]) -> str | None:
        """Why ``message`` (decoded from ``data``) is refused, or None to let it pass."""


class BelongsOnTaskQueue(MessageCheck):
    """Only tasks and cancel requests are sent to a task queue."""

    name = "kind"

    def problem(self, message: object, data: dict[str, Any]) -> str | None:
        if isinstance(message, (TaskEnvelope, CancelRequest)):
            return None
        return f"a {getattr(message, 'TYPE', '?')!r} message does not belong on a task queue"


class SignedByService(MessageCheck):
    """The service signed the message for this endpoint, recently (outpost.protocol.signing).
    Declared only once the endpoint holds the service's signing key."""

    name = "signature"

    def __init__(self, verifier: Verifier, endpoint_id: str) -> None:
        self.verifier = verifier
        self.endpoint_id = endpoint_id

    def problem(self, message: object, data: dict[str, Any]) -> str | None:
        try:
            self.verifier.verify(data, self.endpoint_id)
        except SignatureError as exc:
            return f"refused by the signature check: {exc}"
        return None


class AddressedHere(MessageCheck):
    """The message names this endpoint (a task queue is per endpoint, so another endpoint's
    message here is misrouted or forged)."""

    name = "address"

    def __init__(self, endpoint_id: str) -> None:
        self.endpoint_id = endpoint_id

    def problem(self, message: object, data: dict[str, Any]) -> str | None:
        if isinstance(message, TaskEnvelope) and message.endpoint_id != self.endpoint_id:
            return (
                f"task {message.task_id} is addressed to endpoint {message.endpoint_id}, "
                f"not this one ({self.endpoint_id})"
            )
        if isinstance(message, CancelRequest) and message.endpoint_id != self.endpoint_id:
            return f"cancel request is addressed to endpoint {message.endpoint_id}, not this one"
        return None


# ---------------------------------------------------------------------- task checks
class TaskCheck(abc.ABC):
    """A reason to answer a task with a failure instead of running it."""

    name: ClassVar[str]

    @abc.abstractmethod
    def refusal(self, task: TaskEnvelope) -> ResultEnvelope | None:
        """The failed result that answers ``task``, or None to let it run."""


class FunctionIdMatches(TaskCheck):
    """The function bytes hash to the task's ``function_id``.  First, because the allow-list
    trusts the id.  The hash is the one the service computes ids with
    (:func:`outpost.protocol.function_id_for`, sha256): about 1 us per KiB, once per task."""

    name = "function_id"

    def refusal(self, task: TaskEnvelope) -> ResultEnvelope | None:
        actual = function_id_for(task.function)
        if actual == task.function_id:
            return None
        log.warning(
            "task %s: function payload hashes to %s, not its function_id %s; failing it "
            "without running",
            task.task_id,
            actual,
            task.function_id,
        )
        return function_mismatch_result(task, actual)


class FunctionAllowed(TaskCheck):
    """The function is in the endpoint's own ``allowed_functions`` (config.yaml).  Declared
    only when the endpoint has such a list."""

    name = "allow_list"

    def __init__(self, allowed_functions: Collection[str]) -> None:
        self.allowed_functions = frozenset(allowed_functions)

    def refusal(self, task: TaskEnvelope) -> ResultEnvelope | None:
        if task.function_id in self.allowed_functions:
            return None
        log.warning(
            "task %s: function %s is not in allowed_functions; failing it without running",
            task.task_id,
            task.function_id,
        )
        return refused_function_result(task)


class ArgumentsAreData(TaskCheck):
    """A shared user's (unsealed) arguments declare the JSON format.  Reads the format byte
    only; sealed arguments are checked by the worker once opened
    (:func:`outpost_endpoint.execution.run_task`)."""

    name = "data_only"

    def refusal(self, task: TaskEnvelope) -> ResultEnvelope | None:
        if not task.args_must_be_data or is_data_payload(task.args) or is_sealed(task.args):
            return None
        strategy = payload_strategy(task.args)
        declared = "no outpost format" if strategy is None else f"the {strategy.value!r} format"
        log.warning(
            "task %s: submitter %r sent arguments in %s, not JSON data; failing it without "
            "reading them",
            task.task_id,
            task.submitter,
            declared,
        )
        return arguments_not_data_result(task, declared)


class NotExpired(TaskCheck):
    """The task arrived before its deadline (``resource_specification["expires_after"]``)."""

    name = "expiry"

    def refusal(self, task: TaskEnvelope) -> ResultEnvelope | None:
        deadline = deadline_of(task)
        return expired_result(task, deadline) if deadline is not None else None


class NotCancelled(TaskCheck):
    """No cancel request for the task arrived before it did.  Such a request cannot reach the
    engine, so its task id is remembered here (a bounded set, oldest forgotten first) and the
    task answered ``cancelled`` when it comes."""

    name = "cancel"

    def __init__(self, size: int = CANCEL_MEMORY) -> None:
        self._ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._size = size

    def remember(self, task_id: str) -> None:
        """A cancel request named ``task_id``, which is not in the engine."""
        self._ids[task_id] = None
        while len(self._ids) > self._size:
            self._ids.popitem(last=False)

    def refusal(self, task: TaskEnvelope) -> ResultEnvelope | None:
        if self._ids.pop(task.task_id, False) is None:  # remembered: forget it, answer it
            return cancelled_result(task)
        return None


# ---------------------------------------------------------------------- the pipeline
@dataclass(frozen=True)
class Checks:
    """Both stages, each in the order its checks run."""

    messages: Sequence[MessageCheck]
    tasks: Sequence[TaskCheck]

    def problem(self, message: object, data: dict[str, Any]) -> str | None:
        """The first message check's objection to ``message``, or None."""
        for check in self.messages:
            problem = check.problem(message, data)
            if problem is not None:
                return problem
        return None

    def refusal(self, task: TaskEnvelope) -> ResultEnvelope | None:
        """The first task check's answer to ``task``, or None: it may run."""
        for check in self.tasks:
            answer = check.refusal(task)
            if answer is not None:
                return answer
        return None


def endpoint_checks(
    endpoint_id: str,
    *,
    verifier: Verifier | None = None,
    allowed_functions: Collection[str] | None = None,
    cancelled: NotCancelled | None = None,
) -> Checks:
    """The endpoint's checks, in order; those the configuration leaves out are not declared
    (so they cost nothing)."""
    messages: list[MessageCheck] = [BelongsOnTaskQueue()]
    if verifier is not None:
        messages.append(SignedByService(verifier, endpoint_id))
    messages.append(AddressedHere(endpoint_id))
    tasks: list[TaskCheck] = [FunctionIdMatches()]
    if allowed_functions is not None:
        tasks.append(FunctionAllowed(allowed_functions))
    tasks += [ArgumentsAreData(), NotExpired(), cancelled or NotCancelled()]
    return Checks(tuple(messages), tuple(tasks))
