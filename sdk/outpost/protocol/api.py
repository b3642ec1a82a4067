"""The answers of the service's HTTP API, as typed models.

The service documents its routes with them (``/openapi.json`` is generated from these models
and the route declarations) and the SDK parses what it reads through them, so a field is named
once for both sides.  The models ignore fields they do not know: an older SDK keeps working
with a newer service.  Request bodies are the service's own (``outpost_service.api.bodies``):
their checks depend on its configuration.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SkipValidation

#: Seconds since the epoch, or null where the moment has not come.
Timestamp = float | None


class Answer(BaseModel):
    """Base of every answer model: unknown fields are ignored, nothing is coerced silently."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Health(Answer):
    """Liveness, the service's version and the protocol version it speaks."""

    status: Literal["ok"]
    version: str
    protocol: int


class Check(Answer):
    """One readiness check: whether the part answered, why not, and how long it took."""

    ok: bool
    detail: str = ""
    seconds: float


class Readiness(Answer):
    """``GET /ready`` when the service can serve: its database and broker both answered
    (503 ``not_ready`` otherwise, with the same checks in the error's ``details``)."""

    status: Literal["ready"]
    checks: dict[str, Check]


class BrokerSettings(Answer):
    """How a registered endpoint reaches RabbitMQ; ``url`` carries the endpoint's own broker
    user (a new password on every registration)."""

    url: str
    urls: list[str] | None = Field(
        None,
        description="every RabbitMQ node's URL (url first), tried in order; null: url alone",
    )
    task_exchange: str
    task_queue: str
    result_exchange: str
    result_routing_key: str
    status_routing_key: str
    heartbeat_interval: float
    task_signing_key: str | None = Field(
        None,
        description="base64 Ed25519 public key the endpoint pins; it runs only tasks so signed",
    )
    task_max_age: float | None = Field(None, description="seconds a signed task stays valid")


class Registration(Answer):
    """A registered (or re-attached) endpoint and its broker settings."""

    endpoint_id: str
    name: str
    amqp: BrokerSettings


class Endpoint(Answer):
    """An endpoint as listed: yours, or someone else's shared with you."""

    endpoint_id: str
    name: str
    state: Literal["online", "offline"]
    last_heartbeat: Timestamp
    details: dict[str, Any]
    metadata: dict[str, Any]
    outstanding_tasks: int
    created_at: Timestamp
    owner: str = Field(description="the owner's user name")
    shared: bool = Field(description="someone else's endpoint, shared with you")
    allowed_functions: list[str] | None = Field(
        description="the function ids that may run on it; null: any"
    )


class Endpoints(Answer):
    """Your endpoints first, then those shared with you."""

    endpoints: list[Endpoint]


class EndpointDeleted(Answer):
    """The id of the endpoint deleted (its queue and broker user too)."""

    deleted: str


class EndpointPolicy(Answer):
    """Who besides the owner may use an endpoint, and which functions may run on it."""

    endpoint_id: str
    allowed_users: list[str]
    allowed_functions: list[str] | None = Field(description="null: any function may run")


class FunctionRegistered(Answer):
    """The function's id: the sha256 hex of its payload (the same bytes, the same id)."""

    function_id: str


class TaskIds(Answer):
    """The ids of the submitted tasks, in the order of the request."""

    task_ids: list[str]


#: A result as stored: a ``ResultEnvelope`` (outpost.protocol) dict, with the service's
#: ``endpoint_owned``, ``endpoint_owner`` and ``withheld`` marks (docs/SECURITY.md, "Result
#: trust").  Not checked here: the SDK decodes each result on its own, so one malformed result
#: fails one future, not a whole poll (and a poll of many results is not read twice).
ResultItem = SkipValidation[dict[str, Any]]


class TaskEvent(Answer):
    """One state a task went through, and when."""

    state: str
    at: float


class Task(Answer):
    """One task with its result (null until it has one) and its events."""

    task_id: str
    state: str
    endpoint_id: str
    function_id: str
    task_group_id: str | None
    created_at: Timestamp
    completed_at: Timestamp
    result: ResultItem | None
    events: list[TaskEvent]


class CancelOutcome(Answer):
    """A task's state after a cancel request (a finished task keeps its state)."""

    task_id: str
    state: str


class Results(Answer):
    """The results found (at most the answer's size budget) and every id still pending."""

    results: list[ResultItem]
    pending: list[str]


class GroupTask(Answer):
    """One task of a group; ``retried_by`` names the task that retried it."""

    task_id: str
    state: str
    function_id: str
    endpoint_id: str
    retried_by: str | None


class GroupTasks(Answer):
    """Every task of a group, and how many its executors declared they accepted."""

    task_group_id: str
    submitted: int | None
    tasks: list[GroupTask]


class Retry(Answer):
    """One retried task and its new attempt."""

    old: str
    new: str


class GroupRetried(Answer):
    """The retries made, old and new task id each."""

    task_group_id: str
    retried: list[Retry]


class ErrorGroup(Answer):
    """Failures of one error type and first message line, with example task ids."""

    type: str
    message: str
    count: int
    task_ids: list[str]


class GroupSummary(Answer):
    """A group's outcome: counts per state (of every attempt and of the latest attempts) and
    its failures grouped by error, most frequent first; ``submitted`` (what the executors
    declared, null if none) next to ``stored`` shows tasks that never reached the service."""

    task_group_id: str
    tasks: int
    retried: int
    submitted: int | None
    stored: int
    states: dict[str, int]
    latest_states: dict[str, int]
    errors: list[ErrorGroup]
    error_groups: int


class ErrorDetail(Answer):
    """What went wrong: a stable ``code``, a sentence for people, and facts for programs."""

    code: str
    message: str
    details: dict[str, Any]


class ErrorAnswer(Answer):
    """The one shape of every error the service answers."""

    error: ErrorDetail
