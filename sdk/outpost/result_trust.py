"""Whether a result may be unpickled here: results of endpoints you do not own are data only.

Unpickling runs code.  A result comes from whatever ran on the endpoint -- its owner's
installation and anything in its workers -- so a pickled value or exception from someone else's
(shared) endpoint could run code in *this* process as *this* user.  The rule (docs/SECURITY.md,
"Result trust"):

* the service says, per result, whether the caller owns the task's endpoint
  (``"endpoint_owned": true``; otherwise ``false`` with ``"endpoint_owner"``) -- that answer is
  authoritative: the endpoint cannot set it (ingest stores only the envelope's own fields) and
  a result without it counts as not owned;
* results of owned endpoints, and of endpoints the caller opted in to trust
  (``Executor(trust_endpoint=True)``, ``Client(trust_endpoints=[...])``,
  ``outpost tasks result --trust-endpoint``), load as before;
* from any other endpoint only a JSON value loads (endpoints write plain data as JSON, see
  :func:`outpost.protocol.serialize_result`); a pickle raises :class:`UntrustedResultError`
  naming the endpoint, its owner and the opt-ins, and an exception is rebuilt from its class
  name, message and traceback text (:class:`~outpost.errors.RemoteExecutionError`) without
  unpickling it.  The service withholds such pickles too, so an older SDK is not fooled.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from outpost.errors import UntrustedResultError
from outpost.protocol import ResultEnvelope, Strategy, deserialize, payload_strategy


@dataclass(frozen=True)
class Origin:
    """Where a result came from, as the service reported it."""

    endpoint_id: str
    #: True only when the service said so (``"endpoint_owned": true``).
    owned: bool
    #: The endpoint owner's user name (empty when owned or not reported).
    owner: str = ""
    #: Fields the service held back as not plain data (``"value"``, ``"error.payload"``).
    withheld: tuple[str, ...] = ()


def origin_of(item: Mapping[str, Any]) -> Origin:
    """The origin fields of one result as the service sent it (a JSON object)."""
    owner = item.get("endpoint_owner")
    withheld = item.get("withheld")
    return Origin(
        endpoint_id=str(item.get("endpoint_id", "")),
        owned=item.get("endpoint_owned") is True,
        owner=owner if isinstance(owner, str) else "",
        withheld=tuple(w for w in withheld if isinstance(w, str))
        if isinstance(withheld, list)
        else (),
    )


def is_trusted(origin: Origin, trust: Collection[str]) -> bool:
    """Results of ``origin`` may be unpickled: the caller owns the endpoint or trusts it."""
    return origin.owned or origin.endpoint_id in trust


def describe(origin: Origin) -> str:
    """``endpoint <id> (owned by 'alice')`` for messages."""
    owner = f" (owned by {origin.owner!r})" if origin.owner else ""
    return f"endpoint {origin.endpoint_id}{owner}"


def untrusted_error(task_id: str, origin: Origin) -> UntrustedResultError:
    owner = (
        f"user {origin.owner!r}"
        if origin.owner
        else "someone the service did not name (a service older than this SDK never says that "
        "an endpoint is yours: upgrade it)"
    )
    return UntrustedResultError(
        f"the result of task {task_id} comes from endpoint {origin.endpoint_id}, owned by "
        f"{owner}, not you, and is not plain JSON data: it is a pickle, and loading it could "
        "run code in this process, so it was not loaded. Return plain data (numbers, strings, "
        "lists, dicts) from the function, or, if you trust that endpoint's owner, opt in with "
        f"Executor(..., trust_endpoint=True), Client(trust_endpoints=[{origin.endpoint_id!r}]) "
        f"or `outpost tasks result --trust-endpoint {task_id}`",
        task_id=task_id,
        endpoint_id=origin.endpoint_id,
        owner=origin.owner,
    )


def load_value(envelope: ResultEnvelope, origin: Origin, trusted: bool) -> Any:
    """The value of a successful result: any payload when ``trusted``, else JSON only."""
    if trusted:
        return deserialize(envelope.value or b"")
    if payload_strategy(envelope.value) is not Strategy.JSON:
        raise untrusted_error(envelope.task_id, origin)
    return deserialize(envelope.value or b"", data_only=True)
