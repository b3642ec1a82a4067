"""Envelopes: the messages exchanged between SDK, service and endpoint.

Each envelope is a dataclass with ``to_dict``/``from_dict`` (the HTTP API embeds the dict form)
and ``to_bytes`` (the AMQP body, UTF-8 JSON).  Payload fields hold bytes produced by
:mod:`outpost.protocol.serialize`; on the wire they are base64 text.  Every envelope carries the
protocol version ``v`` and its ``type``; :func:`decode_message` checks both.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from outpost.errors import MalformedMessageError
from outpost.protocol.version import PROTOCOL_VERSION, check_protocol_version


class TaskState(str, enum.Enum):
    """Where a task is in its life; see DESIGN.md "States"."""

    RECEIVED = "received"
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


def b64encode(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def b64decode(text: Any, name: str) -> bytes | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise MalformedMessageError(
            f"field {name!r} must be base64 text, got {type(text).__name__}"
        )
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise MalformedMessageError(f"field {name!r} is not valid base64: {exc}") from exc


def _require(data: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in data:
        raise MalformedMessageError(f"message lacks required field {name!r}")
    value = data[name]
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise MalformedMessageError(
            f"field {name!r} must be {expected}, got {type(value).__name__}"
        )
    return value


def _optional(data: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = data.get(name, default)
    if value is None or value is default:
        return value
    return _require(data, name, kind)


E = TypeVar("E", bound="_Envelope")


class _Envelope:
    TYPE: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls: type[E], data: dict[str, Any]) -> E:
        raise NotImplementedError

    @classmethod
    def from_bytes(cls: type[E], body: bytes) -> E:
        message = decode_message(body)
        if not isinstance(message, cls):
            raise MalformedMessageError(
                f"expected a {cls.TYPE!r} message, got {getattr(message, 'TYPE', '?')!r}"
            )
        return message


@dataclass
class TaskEnvelope(_Envelope):
    """A task on its way from the service to an endpoint."""

    TYPE: ClassVar[str] = "task"
    task_id: str
    function_id: str
    function: bytes
    args: bytes
    endpoint_id: str
    task_group_id: str | None = None
    resource_specification: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    #: Who sent the task, as the service knows it: ``"owner"`` (the endpoint's owner) or
    #: ``"shared"`` (a user it is shared with, whose arguments must be JSON data, see
    #: :mod:`outpost.protocol.data_only`).  Set by the service, covered by its signature;
    #: None (a message from an older service) means the owner, as before.
    submitter: str | None = None
    #: Set by the service's signature (see :mod:`outpost.protocol.signing`); optional.
    issued_at: float | None = None
    sig: str | None = None

    @property
    def args_must_be_data(self) -> bool:
        """Whether this task's arguments may only be JSON data: any submitter but the owner
        (an unknown value too: the rule fails closed)."""
        return self.submitter not in (None, SUBMITTER_OWNER)

    def to_dict(self) -> dict[str, Any]:
        data = _signature_fields(self, {
            "v": PROTOCOL_VERSION,
            "type": self.TYPE,
            "task_id": self.task_id,
            "function_id": self.function_id,
            "function": b64encode(self.function),
            "args": b64encode(self.args),
            "endpoint_id": self.endpoint_id,
            "task_group_id": self.task_group_id,
            "resource_specification": self.resource_specification,
            "created_at": self.created_at,
        })  # fmt: skip
        if self.submitter is not None:  # additive: older messages stay exactly as they were
            data["submitter"] = self.submitter
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskEnvelope:
        return cls(
            task_id=_require(data, "task_id", str),
            function_id=_require(data, "function_id", str),
            function=b64decode(_require(data, "function", str), "function") or b"",
            args=b64decode(_require(data, "args", str), "args") or b"",
            endpoint_id=_require(data, "endpoint_id", str),
            task_group_id=_optional(data, "task_group_id", str, None),
            resource_specification=_optional(data, "resource_specification", dict, {}) or {},
            created_at=float(_optional(data, "created_at", (int, float), 0.0) or 0.0),
            submitter=_optional(data, "submitter", str, None),
            **_read_signature_fields(data),
        )


@dataclass
class ErrorInfo:
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
    payload: bytes | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "message": self.message,
            "reason": self.reason,
            "traceback": self.traceback,
            "payload": b64encode(self.payload),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorInfo:
        if not isinstance(data, dict):
            raise MalformedMessageError("field 'error' must be an object")
        return cls(
            type=_require(data, "type", str),
            message=_require(data, "message", str),
            reason=_optional(data, "reason", str, "exception") or "exception",
            traceback=_optional(data, "traceback", str, "") or "",
            payload=b64decode(data.get("payload"), "error.payload"),
        )


@dataclass
class ResultEnvelope(_Envelope):
    """The outcome of one task, from the endpoint back to the service and on to the client."""

    TYPE: ClassVar[str] = "result"
    task_id: str
    endpoint_id: str
    state: TaskState
    value: bytes | None = None
    error: ErrorInfo | None = None
    timing: dict[str, float] = field(default_factory=dict)
    node: str = ""
    worker: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": PROTOCOL_VERSION,
            "type": self.TYPE,
            "task_id": self.task_id,
            "endpoint_id": self.endpoint_id,
            "state": self.state.value,
            "value": b64encode(self.value),
            "error": self.error.to_dict() if self.error else None,
            "timing": self.timing,
            "node": self.node,
            "worker": self.worker,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResultEnvelope:
        state_text = _require(data, "state", str)
        try:
            state = TaskState(state_text)
        except ValueError as exc:
            raise MalformedMessageError(f"unknown task state {state_text!r}") from exc
        if not state.is_terminal:
            raise MalformedMessageError(f"a result must have a final state, not {state_text!r}")
        error = data.get("error")
        return cls(
            task_id=_require(data, "task_id", str),
            endpoint_id=_require(data, "endpoint_id", str),
            state=state,
            value=b64decode(data.get("value"), "value"),
            error=ErrorInfo.from_dict(error) if error is not None else None,
            timing=_optional(data, "timing", dict, {}) or {},
            node=_optional(data, "node", str, "") or "",
            worker=_optional(data, "worker", str, "") or "",
        )


@dataclass
class EndpointStatus(_Envelope):
    """A heartbeat: the endpoint is alive, and how busy it is."""

    TYPE: ClassVar[str] = "status"
    endpoint_id: str
    state: str = "online"
    sent_at: float = field(default_factory=time.time)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": PROTOCOL_VERSION,
            "type": self.TYPE,
            "endpoint_id": self.endpoint_id,
            "state": self.state,
            "sent_at": self.sent_at,
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EndpointStatus:
        return cls(
            endpoint_id=_require(data, "endpoint_id", str),
            state=_optional(data, "state", str, "online") or "online",
            sent_at=float(_optional(data, "sent_at", (int, float), 0.0) or 0.0),
            details=_optional(data, "details", dict, {}) or {},
        )


@dataclass
class CancelRequest(_Envelope):
    """Asks an endpoint not to run (or to stop) tasks; sent on the endpoint's task queue."""

    TYPE: ClassVar[str] = "cancel"
    endpoint_id: str
    task_ids: list[str] = field(default_factory=list)
    issued_at: float | None = None
    sig: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _signature_fields(self, {
            "v": PROTOCOL_VERSION,
            "type": self.TYPE,
            "endpoint_id": self.endpoint_id,
            "task_ids": list(self.task_ids),
        })  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CancelRequest:
        task_ids = _require(data, "task_ids", list)
        if not all(isinstance(t, str) for t in task_ids):
            raise MalformedMessageError("field 'task_ids' must be a list of strings")
        return cls(
            endpoint_id=_require(data, "endpoint_id", str),
            task_ids=task_ids,
            **_read_signature_fields(data),
        )


def _signature_fields(envelope: Any, data: dict[str, Any]) -> dict[str, Any]:
    """Add ``issued_at``/``sig`` when set: unsigned messages stay exactly as before."""
    if envelope.issued_at is not None:
        data["issued_at"] = envelope.issued_at
    if envelope.sig is not None:
        data["sig"] = envelope.sig
    return data


def _read_signature_fields(data: dict[str, Any]) -> dict[str, Any]:
    issued = _optional(data, "issued_at", (int, float), None)
    return {
        "issued_at": None if issued is None else float(issued),
        "sig": _optional(data, "sig", str, None),
    }


_TYPES: dict[str, type[_Envelope]] = {
    TaskEnvelope.TYPE: TaskEnvelope,
    CancelRequest.TYPE: CancelRequest,
    ResultEnvelope.TYPE: ResultEnvelope,
    EndpointStatus.TYPE: EndpointStatus,
}


def json_object(body: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """The JSON object in ``body`` (a dict passes through), so a receiver that both checks a
    signature and decodes an envelope parses the message once."""
    if isinstance(body, dict):
        return body
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedMessageError(f"message is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedMessageError("message must be a JSON object")
    return data


def decode_message(body: bytes | str | dict[str, Any]) -> _Envelope:
    """Parse any envelope, checking its protocol version and type."""
    data = json_object(body)
    check_protocol_version(data.get("v"), f"{data.get('type', 'unknown')!r} message")
    kind = data.get("type")
    envelope_type = _TYPES.get(kind) if isinstance(kind, str) else None
    if envelope_type is None:
        raise MalformedMessageError(
            f"unknown message type {kind!r}; expected one of {sorted(_TYPES)}"
        )
    return envelope_type.from_dict(data)
