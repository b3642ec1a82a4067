"""The request bodies of the HTTP API, as typed models.

A route names its body in its declaration (``outpost_service.routing.declare``); the body is
checked against the model before the handler runs, and the OpenAPI document shows the model.  Checks
that depend on the service's configuration (payload, batch and metadata limits) read it from
the validation context (``info.context["config"]``).  Fields a model does not know are
ignored, except where a misspelt field would silently change what happens (the policy).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from outpost.protocol import TaskRequest
from outpost_service.validation import (
    ClientToken,
    FunctionId,
    Name,
    Payload,
    SmallObject,
    Uuid,
    json_size,
    refuse,
)

#: The most users, and function ids, one endpoint's policy may name.
MAX_POLICY_ENTRIES = 1000
#: At most this many endpoint ids in ``trust_endpoints``.
MAX_TRUSTED = 1000
#: The longest long-poll (seconds).
MAX_WAIT = 60.0
#: The largest count a client may declare for a group (far above any campaign).
MAX_DECLARED = 10**12
#: States a task can be retried from (terminal, and not a success).
RetryableState = Literal["failed", "lost", "cancelled"]


class Body(BaseModel):
    """Base of every request body: JSON types are taken as they are (no ``"5"`` for 5)."""

    model_config = ConfigDict(strict=True, frozen=True)


def _batch_limit(field: str) -> Any:
    """A model check refusing a list ``field`` longer than the service's ``max_batch``; it
    runs before the items are checked, so an oversized batch costs nothing more."""

    def check(cls: type[Body], data: Any, info: ValidationInfo) -> Any:
        items = data.get(field) if isinstance(data, dict) else None
        most = info.context["config"].max_batch if info.context else None
        if isinstance(items, list) and most is not None and len(items) > most:
            raise refuse(
                f"a request may hold at most {most:,} {field.replace('_', ' ')}, got "
                f"{len(items):,}; split it",
                "batch_too_large",
                count=len(items),
                max=most,
            )
        return data

    return model_validator(mode="before")(check)


# ---------------------------------------------------------------------------- endpoints
class RegisterEndpoint(Body):
    """Register an endpoint, or re-attach one: the same name for the same owner, or a known
    ``endpoint_id``, gets the same id."""

    name: Name
    endpoint_id: Uuid | None = None
    metadata: SmallObject | None = Field(
        None,
        description="facts about the endpoint (host, versions); at most max_metadata_bytes "
        "(64 KiB) of compact JSON, else 413",
    )
    force: bool = Field(
        False,
        description="register even while the endpoint heartbeats (else 409); the running "
        "endpoint is cut off",
    )

    @field_validator("metadata")
    @classmethod
    def _small_enough(cls, value: dict[str, Any] | None, info: ValidationInfo) -> Any:
        limit = info.context["config"].max_metadata_bytes if info.context else None
        if value is not None and limit is not None and json_size(value) > limit:
            raise refuse(
                f"is {json_size(value):,} bytes of JSON, over the limit of {limit:,} bytes; "
                "keep it to a few facts (host, versions, settings), or ask the operator to "
                "raise max_metadata_bytes (OUTPOST_MAX_METADATA_BYTES)",
                "payload_too_large",
                size=json_size(value),
                limit=limit,
            )
        return value


class SetPolicy(Body):
    """Share an endpoint with users and/or restrict it to listed function ids; replaces the
    whole policy."""

    model_config = ConfigDict(extra="forbid")

    allowed_users: list[Name] = Field(max_length=MAX_POLICY_ENTRIES)
    allowed_functions: list[FunctionId] | None = Field(
        None, max_length=MAX_POLICY_ENTRIES, description="null: any function may run"
    )


# ---------------------------------------------------------------------------- functions
class RegisterFunction(Body):
    """A serialized function; its id is the sha256 of the payload."""

    function: Payload
    name: str | None = Field(None, description="a label for display (cut to 64 characters)")


# ---------------------------------------------------------------------------- tasks
def _expiry(spec: dict[str, Any]) -> dict[str, Any]:
    expires = spec.get("expires_after")
    if expires is not None and (
        isinstance(expires, bool) or not isinstance(expires, (int, float)) or not expires > 0
    ):
        raise refuse(
            "must have a positive number of seconds as expires_after (or none: never "
            f"expires), got {expires!r:.80}"
        )
    return spec


#: Most parents one task may name.
MAX_DEPENDENCIES = 1000


class TaskItem(TaskRequest):
    """One task to run: the protocol's :class:`~outpost.protocol.TaskRequest` (its fields
    declared once, there), with the service's stricter checks on the fields that need them: a
    field added to the request is accepted here without a change."""

    model_config = ConfigDict(strict=True, frozen=True)

    function_id: FunctionId
    endpoint_id: Uuid
    task_group_id: Uuid | None = None
    resource_specification: Annotated[SmallObject, AfterValidator(_expiry)] = Field(
        default_factory=dict,
        description="how the endpoint runs the task (e.g. expires_after seconds); null means none",
    )
    depends_on: list[Uuid] = Field(
        default_factory=list,
        max_length=MAX_DEPENDENCIES,
        description="ids of your tasks whose results the arguments name: the task waits "
        "('waiting') until they all succeeded, and fails with reason 'dependency' if one did not",
    )
    args: Payload

    @field_validator("resource_specification", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        """``null`` (what older clients send for "nothing special") is no specification."""
        return {} if value is None else value


class GroupSubmitted(Body):
    """How many tasks the submitting executor accepted for its group so far."""

    task_group_id: Uuid
    client_id: ClientToken
    count: int = Field(ge=0, le=MAX_DECLARED)


class SubmitTasks(Body):
    """A batch of tasks (at most ``max_batch``), answered after the commit and the broker's
    confirms; a retry with the same ``request_id`` returns the same task ids."""

    tasks: list[TaskItem]
    request_id: ClientToken | None = None
    group_submitted: GroupSubmitted | None = None

    _batch_size = _batch_limit("tasks")


class CollectResults(Body):
    """Which results to collect, and how long to wait for the first one."""

    task_ids: list[Uuid]
    wait: float = Field(0, ge=0, le=MAX_WAIT, description="seconds to wait for a result")
    trust_endpoints: list[Uuid] | None = Field(
        None,
        max_length=MAX_TRUSTED,
        description="endpoints not yours whose pickled values and exceptions you accept "
        "(withheld otherwise)",
    )

    _batch_size = _batch_limit("task_ids")


# ---------------------------------------------------------------------------- task groups
class RetryGroup(Body):
    """Which latest attempts to resubmit: successes are never rerun."""

    states: list[RetryableState] | None = Field(
        None, min_length=1, description="the states to retry from; null: failed and lost"
    )

    def chosen_states(self) -> list[str]:
        """The states asked for, once each, in order."""
        return list(dict.fromkeys(self.states or ("failed", "lost")))
