"""Envelopes: the messages exchanged between SDK, service and endpoint.

Each envelope is one pydantic model (see :mod:`outpost.protocol.messages` for what they share):
``to_dict``/``from_dict`` (the HTTP API embeds the dict form), ``to_bytes`` (the AMQP body,
UTF-8 JSON), ``header`` (the engine's frame header) and ``model_json_schema()`` all come from
the fields declared here.  Payload fields hold bytes produced by
:mod:`outpost.protocol.serialize`; on the wire they are base64 text.  Every envelope carries the
protocol version ``v`` and its ``type``; :func:`decode_message` checks both.
"""

from __future__ import annotations

import enum
import time
from typing import Any, Literal

from pydantic import Field, field_validator

from outpost.protocol.messages import (
    Envelope,
    Payload,
    ProtocolModel,
    b64encode,
    decode_message,
    json_object,
    omitted_when_none,
)

__all__ = [
    "SUBMITTER_OWNER",
    "SUBMITTER_SHARED",
    "CancelRequest",
    "EndpointStatus",
    "Envelope",
    "ErrorInfo",
    "ResultEnvelope",
    "TaskEnvelope",
    "TaskRequest",
    "TaskState",
    "b64encode",
    "decode_message",
    "json_object",
]


class TaskState(str, enum.Enum):
    """Where a task is in its life; see DESIGN.md "States"."""

    RECEIVED = "received"
    #: Held by the service until every task it depends on succeeded (``depends_on``).
    WAITING = "waiting"
    QUEUED = "queued"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = {TaskState.SUCCESS, TaskState.FAILED, TaskState.CANCELLED, TaskState.LOST}

#: ``TaskEnvelope.submitter`` values the service sets.
SUBMITTER_OWNER = "owner"
SUBMITTER_SHARED = "shared"


class TaskRequest(ProtocolModel):
    """A task as its client asks for it: one item of ``POST /v1/tasks`` (``args`` as base64).
    The service stores it and sends it on as a :class:`TaskEnvelope`, which adds the rest."""

    function_id: str = Field(description="sha256 hex of the serialized function")
    endpoint_id: str
    task_group_id: str | None = None
    resource_specification: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(
        default_factory=list,
        description=(
            "task ids (of the same user) whose results this task's arguments name "
            "(outpost.protocol.dependencies.ParentRef); the service holds the task as "
            "'waiting' until they all succeeded, and fails it with reason 'dependency' if one "
            "did not"
        ),
    )
    # last: the costliest check (base64 of up to the payload limit), so a request that is
    # wrong elsewhere is answered before it is decoded
    args: Payload = Field(description="the (args, kwargs) pair, outpost.protocol.serialize'd")


class TaskEnvelope(TaskRequest, Envelope):
    """A task on its way from the service to an endpoint: its client's request, and what the
    service adds (the id, the function itself, the time, who sent it, the signature)."""

    #: The order of the dataclass this model replaced, for callers that pass fields by position.
    positional = (
        "task_id", "function_id", "function", "args", "endpoint_id", "task_group_id",
        "resource_specification", "created_at", "submitter", "issued_at", "sig",
    )  # fmt: skip

    type: Literal["task"] = "task"
    task_id: str
    function: Payload
    created_at: float = Field(default_factory=time.time)
    submitter: str | None = Field(
        None,
        exclude_if=omitted_when_none,
        description=(
            "Who sent the task, as the service knows it: 'owner' (the endpoint's owner) or "
            "'shared' (a user it is shared with, whose arguments must be JSON data, see "
            "outpost.protocol.data_only).  Set by the service, covered by its signature; "
            "absent (a message from an older service) means the owner."
        ),
    )
    parent_values: dict[str, str] | None = Field(
        None,
        exclude_if=omitted_when_none,
        description=(
            "the result value of each task in depends_on, by task id, as the base64 text of "
            "its ResultEnvelope's value (copied by the service, never unpickled there); the "
            "worker puts them where the arguments hold a ParentRef"
        ),
    )
    issued_at: float | None = Field(
        None, exclude_if=omitted_when_none, description="set by the service's signature"
    )
    sig: str | None = Field(
        None,
        exclude_if=omitted_when_none,
        description="Ed25519 signature (outpost.protocol.signing)",
    )

    @property
    def args_must_be_data(self) -> bool:
        """Whether this task's arguments may only be JSON data: any submitter but the owner
        (an unknown value too: the rule fails closed)."""
        return self.submitter not in (None, SUBMITTER_OWNER)


class ErrorInfo(ProtocolModel):
    """Why a task did not produce a value.

    ``reason`` is machine-readable: ``exception`` (the function raised), ``timeout``,
    ``worker_lost``, ``manager_lost``, ``serialization`` (arguments or result could not be
    (de)serialized), ``cancelled``, ``dependency``, ``rejected`` (the endpoint refused the task).
    ``payload`` is the pickled exception when it could be pickled, so the SDK can re-raise the
    original class.
    """

    type: str
    message: str
    reason: str = "exception"
    traceback: str = ""
    payload: Payload | None = None


class ResultEnvelope(Envelope):
    """The outcome of one task, from the endpoint back to the service and on to the client."""

    type: Literal["result"] = "result"
    task_id: str
    endpoint_id: str
    state: TaskState = Field(strict=False)  # the value's text on the wire
    value: Payload | None = None
    error: ErrorInfo | None = None
    timing: dict[str, float] = Field(default_factory=dict)
    node: str = ""
    worker: str = ""

    @field_validator("state")
    @classmethod
    def _final(cls, state: TaskState) -> TaskState:
        if not state.is_terminal:
            final = ", ".join(repr(s.value) for s in TaskState if s.is_terminal)
            raise ValueError(f"must be a final state ({final})")
        return state


class EndpointStatus(Envelope):
    """A heartbeat: the endpoint is alive, and how busy it is."""

    type: Literal["status"] = "status"
    endpoint_id: str
    state: str = "online"
    sent_at: float = Field(default_factory=time.time)
    details: dict[str, Any] = Field(default_factory=dict)


class CancelRequest(Envelope):
    """Asks an endpoint not to run (or to stop) tasks; sent on the endpoint's task queue."""

    type: Literal["cancel"] = "cancel"
    endpoint_id: str
    task_ids: list[str]
    issued_at: float | None = Field(None, exclude_if=omitted_when_none)
    sig: str | None = Field(None, exclude_if=omitted_when_none)
