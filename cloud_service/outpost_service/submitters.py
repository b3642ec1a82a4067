"""Who submits a task to an endpoint -- its owner or a user it is shared with -- and the rule
that follows: shared users' arguments must be JSON data (:mod:`outpost.protocol.data_only`).

The service is the one party that knows the relation unforgeably (the token names the user,
the database the endpoint's owner), so it writes it into every task envelope it signs
(``TaskEnvelope.submitter``); a client cannot set it.  The endpoint enforces the rule from that
field -- the check that counts.  Refusing other payloads here too (422 at ``POST /v1/tasks``
and at retries, before anything is stored) is defence in depth and a clearer, earlier error.
The service reads only the payload's declared format byte: it never deserializes payloads.
Sealed (end-to-end encrypted) arguments cannot be read here; the endpoint's worker checks them
after opening them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from outpost.protocol.data_only import REASON, RULE, is_data_payload, payload_strategy
from outpost.protocol.envelopes import SUBMITTER_OWNER, SUBMITTER_SHARED
from outpost.protocol.sealing import is_sealed
from outpost_service.errors import Unprocessable


def submitter(task_owner: int, endpoint_owner: int | None) -> str:
    """``"owner"`` if the task's submitter owns the endpoint, else ``"shared"`` (an endpoint
    whose owner is unknown counts as shared: the rule fails closed)."""
    return SUBMITTER_OWNER if task_owner == endpoint_owner else SUBMITTER_SHARED


def check_arguments(
    user_id: int, tasks: Sequence[Any], endpoint_owners: Mapping[str, int], label: str = "tasks"
) -> None:
    """Refuse (422 ``arguments_not_data``) the whole batch if one task for an endpoint
    ``user_id`` does not own carries arguments that are not a JSON payload.  ``tasks`` holds
    anything with ``endpoint_id`` and ``args``; the error names the first offender as
    ``label[index]``."""
    for index, task in enumerate(tasks):
        if endpoint_owners.get(task.endpoint_id) == user_id:
            continue
        args = bytes(task.args)
        if is_data_payload(args) or is_sealed(args):
            continue
        strategy = payload_strategy(args)
        declared = "no outpost format" if strategy is None else f"the {strategy.value!r} format"
        raise Unprocessable(
            f"{label}[{index}]: endpoint {task.endpoint_id} is not yours, and its arguments "
            f"payload has {declared}; {RULE}. Pass plain data (the outpost SDK does so "
            "by itself for endpoints shared with you, with serialize(..., Strategy.JSON)), or "
            "ask the endpoint's owner to run the task; nothing of this request was stored",
            code=REASON,
            details={
                "index": index,
                "field": f"{label}[{index}].args",
                "endpoint_id": task.endpoint_id,
                "format": None if strategy is None else strategy.value,
                "allowed_format": "json",
            },
        )
