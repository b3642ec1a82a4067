"""Data-only task arguments: the rule for tasks a *shared user* sends to someone's endpoint.

Why: a task runs as the endpoint owner's Unix account.  Pickle is code -- unpickling a
hand-crafted argument payload runs whatever its author chose, before any allowed function is
called -- so an allow-list of functions means nothing if a shared user's *arguments* may be
pickles (or ``source`` payloads, which are ``exec``-ed).  Arguments of tasks that do not come
from the endpoint's owner must therefore be plain JSON data: ``str``, ``int``, ``float``,
``bool``, ``None``, lists and dicts with ``str`` keys (tuples travel as lists).

Three places apply the rule, all with the functions here:

* the SDK writes such arguments with :func:`dump_data` (and says at ``submit()`` what is not
  data, with :func:`data_problem`);
* the service refuses other payloads at ``POST /v1/tasks`` (:func:`payload_strategy` reads the
  declared format byte and nothing else -- the service never deserializes payloads);
* the endpoint refuses them before the engine, and its workers decode such arguments only with
  :func:`load_data`, which reads the format from the payload's own header and never reaches
  pickle or ``exec``: there is no way to declare JSON and be decoded as anything else.

Who the submitter is comes from the service, inside the signed task envelope
(``TaskEnvelope.submitter``), never from the client.
"""

from __future__ import annotations

import json
import math
from typing import Any

from outpost.errors import ArgumentsNotDataError, SerializationError
from outpost.protocol.serialize import _CODES, _STRATEGIES, MAGIC, Strategy, _frame

#: The ``ErrorInfo.reason`` (and service error code) of a refused non-data argument payload.
REASON = "arguments_not_data"
#: The one-sentence rule, shared by every message that refuses a payload.
RULE = (
    "arguments of tasks sent to an endpoint you do not own must be plain JSON data (str, int, "
    "float, bool, None, lists, and dicts with str keys; tuples arrive as lists), because "
    "unpickling a payload can run code as the endpoint's owner"
)
_JSON_CODE = _CODES[Strategy.JSON]
_MAX_DEPTH = 100


def payload_strategy(payload: bytes) -> Strategy | None:
    """The format ``payload`` declares (its strategy byte), or None if it is not an outpost
    payload at all.  Reads two header bytes; parses nothing."""
    data = bytes(payload[: len(MAGIC) + 1])
    if len(data) <= len(MAGIC) or not data.startswith(MAGIC):
        return None
    return _STRATEGIES.get(data[len(MAGIC) :])


def data_problem(obj: Any, where: str = "arguments") -> str | None:
    """Why ``obj`` is not plain JSON data (naming the first offending place), or None.

    Stricter than ``json.dumps``: subclasses (``IntEnum``, ``numpy.float64``), non-``str``
    dict keys (``json.dumps`` would silently turn ``1`` into ``"1"``) and NaN/infinity (not
    JSON) are refused, so what the function receives is exactly what was passed."""
    return _problem(obj, where, 0)


def _problem(obj: Any, where: str, depth: int) -> str | None:
    if depth > _MAX_DEPTH:
        return f"{where} is nested more than {_MAX_DEPTH} levels deep"
    kind = type(obj)
    if obj is None or kind in (str, int, bool):
        return None
    if kind is float:
        return None if math.isfinite(obj) else f"{where} is {obj!r}, which JSON cannot hold"
    if kind in (list, tuple):
        for i, item in enumerate(obj):
            problem = _problem(item, f"{where}[{i}]", depth + 1)
            if problem:
                return problem
        return None
    if kind is dict:
        for key, value in obj.items():
            if type(key) is not str:
                return f"{where} has a {type(key).__name__} key {key!r:.60} (JSON keys are str)"
            problem = _problem(value, f"{where}[{key!r:.60}]", depth + 1)
            if problem:
                return problem
        return None
    return f"{where} is a {kind.__module__}.{kind.__qualname__} ({obj!r:.60}), not JSON data"


def dump_data(obj: Any, *, limit: int | None) -> bytes:
    """``obj`` as a JSON payload (the ``json`` strategy); :class:`ArgumentsNotDataError` names
    what is not data."""
    problem = data_problem(obj)
    if problem:
        raise ArgumentsNotDataError(f"{problem}; {RULE}")
    body = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    return _frame(Strategy.JSON, {}, body, limit)


def load_data(payload: bytes, what: str = "arguments") -> Any:
    """Decode a payload that must be JSON data; anything else is refused *before* decoding.

    The strategy is the payload's declared format byte; only ``json`` is decoded, with
    ``json.loads`` (no object hooks, no pickle, no ``exec``)."""
    data = bytes(payload)
    strategy = payload_strategy(data)
    if strategy is not Strategy.JSON:
        declared = "no outpost format" if strategy is None else f"the {strategy.value!r} format"
        raise ArgumentsNotDataError(f"the {what} payload has {declared}; {RULE}")
    newline = data.find(b"\n", len(MAGIC) + 1)
    if newline < 0:
        raise SerializationError(f"the {what} payload header is not terminated")
    try:
        return json.loads(data[newline + 1 :])
    except (ValueError, RecursionError) as exc:
        raise SerializationError(f"the {what} payload is not valid JSON: {exc}") from exc


def is_data_payload(payload: bytes) -> bool:
    """Whether ``payload`` declares the JSON format (what shared users' arguments must be)."""
    return bytes(payload[: len(MAGIC) + 1]) == MAGIC + _JSON_CODE
