"""How a task's arguments are written: pickle for your own endpoints, JSON data for others'.

An endpoint runs tasks as its owner's Unix account, and unpickling arguments can run code, so
the service and the endpoint accept only JSON data as arguments of tasks a *shared* user sends
(:mod:`outpost.protocol.data_only`).  The executor asks the service once per endpoint whether
the caller owns it (``GET /v1/endpoints/<id>``: ``"shared": true`` for someone else's) and
writes the arguments accordingly, so the same ``ex.submit(f, 1, "a")`` works on both: the
owner's tasks keep cloudpickle (any Python value, no extra cost per task), a shared user's
plain values travel as JSON (tuples arrive as lists), and anything else is refused at
``submit()`` with what is not data and how to go on.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

from outpost.client import Client
from outpost.errors import (
    ArgumentsNotDataError,
    PayloadTooLargeError,
    SerializationError,
    ServiceError,
    ServiceUnavailableError,
)
from outpost.protocol import serialize
from outpost.protocol.data_only import data_problem, dump_data

log = logging.getLogger(__name__)

_lock = threading.Lock()
#: ``{client: {endpoint_id: owner name or None if the client owns it}}``
_relations: weakref.WeakKeyDictionary[Client, dict[str, str | None]] = weakref.WeakKeyDictionary()


def foreign_owner(client: Client, endpoint_id: str) -> str | None:
    """The owner's name if ``endpoint_id`` is someone else's endpoint shared with the caller,
    else None (the caller's own, or unknown: the service then refuses the task itself).
    Asked once per client and endpoint."""
    with _lock:
        known = _relations.get(client, {})
        if endpoint_id in known:
            return known[endpoint_id]
    try:
        endpoint = client.get_endpoint(endpoint_id)
    except ServiceUnavailableError:
        return None  # not cached: the submit itself will say what is wrong
    except ServiceError as exc:  # 404 and the like: the submit is refused with the reason
        log.debug("cannot tell who owns endpoint %s (%s); arguments stay pickled", endpoint_id, exc)
        endpoint = {}
    owner = str(endpoint.get("owner") or "?") if endpoint.get("shared") is True else None
    with _lock:
        _relations.setdefault(client, {})[endpoint_id] = owner
    return owner


def serialize_arguments(
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    limit: int | None,
    *,
    shared_from: str | None = None,
    endpoint_id: str = "",
) -> bytes:
    """``(args, kwargs)`` serialized for the endpoint, with an error that names the task: with
    cloudpickle, or -- ``shared_from`` names the owner of an endpoint shared with the caller --
    as JSON data."""
    try:
        if shared_from is None:
            return serialize((args, kwargs), limit=limit)
        problem = data_problem(list(args), "args") or data_problem(kwargs, "kwargs")
        if problem:
            raise ArgumentsNotDataError(
                f"cannot submit {name} to endpoint {endpoint_id}: it belongs to {shared_from}, "
                f"and arguments of tasks sent to someone else's endpoint must be plain JSON "
                f"data (str, int, float, bool, None, lists, and dicts with str keys; tuples "
                f"arrive as lists), because unpickling could run code as its owner -- but "
                f"{problem}. Pass plain data (e.g. a list instead of an array, a path to a file "
                f"on the cluster instead of an object), or ask {shared_from} to run the task"
            )
        return dump_data([list(args), kwargs], limit=limit)
    except PayloadTooLargeError as exc:
        raise PayloadTooLargeError(
            f"cannot submit {name}: its arguments are too large: {exc}",
            size=exc.size,
            limit=exc.limit,
        ) from exc
    except ArgumentsNotDataError:
        raise
    except SerializationError as exc:
        raise SerializationError(f"cannot submit {name}: its arguments {exc}") from exc
