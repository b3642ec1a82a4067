"""Serialization strategies for the opaque payloads inside envelopes.

A payload is ``MAGIC + strategy byte + JSON header + b"\\n" + body``.  The header records the
writer's Python and cloudpickle versions so that a failed load can say *exactly* which versions
differ -- the most common complaint of Globus Compute users is an unexplained unpickling error
between a laptop and an endpoint running another Python.

Strategies:

* ``pickle`` (default): cloudpickle; functions from ``__main__`` ship by value.
* ``source``: a function's source text, re-executed on the other side; portable across Python
  and cloudpickle versions, for plain top-level functions.
* ``json``: plain data, readable by anything -- and loadable without running any code, which
  is why an endpoint writes results that are plain data this way (:func:`serialize_result`)
  and why a result from an endpoint the reader does not own is loaded only if it is JSON
  (``deserialize(..., data_only=True)``; see docs/SECURITY.md "Result trust").
"""

from __future__ import annotations

import enum
import hashlib
import inspect
import json
import textwrap
from collections.abc import Callable
from typing import Any

import cloudpickle

from outpost.errors import PayloadTooLargeError, SerializationError, SerializerVersionMismatch
from outpost.protocol.version import runtime_versions

MAGIC = b"\x00OP1"
#: Default limit for one argument set, one function and one result: 10 MiB.
DEFAULT_PAYLOAD_LIMIT = 10 * 1024 * 1024


class Strategy(str, enum.Enum):
    """How a payload body was written."""

    PICKLE = "pickle"
    SOURCE = "source"
    JSON = "json"


_CODES = {Strategy.PICKLE: b"P", Strategy.SOURCE: b"S", Strategy.JSON: b"J"}
_STRATEGIES = {code: strategy for strategy, code in _CODES.items()}


def _frame(strategy: Strategy, header: dict[str, Any], body: bytes, limit: int | None) -> bytes:
    payload = MAGIC + _CODES[strategy] + json.dumps(header).encode() + b"\n" + body
    if limit is not None and len(payload) > limit:
        raise PayloadTooLargeError(
            f"serialized payload is {len(payload):,} bytes, over the limit of {limit:,} bytes; "
            "pass large data by reference (a file path on the cluster) or raise the limit",
            size=len(payload),
            limit=limit,
        )
    return payload


def serialize(
    obj: Any, strategy: Strategy = Strategy.PICKLE, *, limit: int | None = DEFAULT_PAYLOAD_LIMIT
) -> bytes:
    """Serialize ``obj`` with ``strategy``; raise if it exceeds ``limit`` bytes."""
    if strategy is Strategy.PICKLE:
        try:
            body = cloudpickle.dumps(obj)
        except Exception as exc:
            raise SerializationError(
                f"cannot pickle {type(obj).__name__} object: {exc}; make sure every value "
                "(including what a function refers to) can be pickled"
            ) from exc
        versions = runtime_versions()
        header = {"py": versions["python"], "cp": versions["cloudpickle"]}
        return _frame(strategy, header, body, limit)
    if strategy is Strategy.JSON:
        try:
            body = json.dumps(obj, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"value is not plain JSON data: {exc}") from exc
        return _frame(strategy, {}, body, limit)
    if strategy is Strategy.SOURCE:
        return _frame(strategy, {"name": _function_name(obj)}, _source_of(obj), limit)
    raise SerializationError(f"unknown serialization strategy {strategy!r}")


def serialize_function(
    fn: Callable[..., Any],
    strategy: Strategy = Strategy.PICKLE,
    *,
    limit: int | None = DEFAULT_PAYLOAD_LIMIT,
) -> bytes:
    """Serialize a function to register with the service (see :func:`function_id_for`)."""
    if not callable(fn):
        raise SerializationError(f"expected a callable, got {type(fn).__name__}")
    return serialize(fn, strategy, limit=limit)


def function_id_for(payload: bytes) -> str:
    """The content address of a serialized function: the same function registers once."""
    return hashlib.sha256(payload).hexdigest()


#: Plain data nests at most this deep to be written as JSON (deeper: pickled).
_MAX_DATA_DEPTH = 64
_SCALARS = frozenset({str, int, float, bool, type(None)})
_CONTAINERS = frozenset({list, dict})
_NODES = _SCALARS | _CONTAINERS


def is_plain_data(value: Any) -> bool:
    """True when ``value`` is built only of ``None``, ``bool``, ``int``, ``float``, ``str``,
    ``list`` and ``dict`` with ``str`` keys -- exact types, so tuples and subclasses
    (``IntEnum``, ``OrderedDict``), which a JSON round trip would change, are not plain data.
    (NaN, infinities and integers too long for text are refused by :func:`serialize_result`.)
    The element types of each container are collected at C speed (``set(map(type, ...))``):
    a list of a million numbers costs milliseconds, not a Python loop."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind in _SCALARS:
            continue
        if depth >= _MAX_DATA_DEPTH:
            return False
        if kind is list:
            children: Any = item
        elif kind is dict:
            if not set(map(type, item)) <= {str}:
                return False
            children = item.values()
        else:
            return False
        kinds = set(map(type, children))
        if kinds <= _SCALARS:
            continue
        if not kinds <= _NODES:
            return False
        stack.extend((child, depth + 1) for child in children if type(child) in _CONTAINERS)
    return True


def serialize_result(value: Any, *, limit: int | None = DEFAULT_PAYLOAD_LIMIT) -> bytes:
    """How an endpoint writes a task's value: JSON when it is plain data (any reader can load
    it without running code, so users of a shared endpoint need not trust its owner), else
    cloudpickle."""
    if is_plain_data(value):
        try:
            body = json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
        except ValueError:  # NaN or infinity, or an int too long for text: keep it exact
            pass
        else:
            return _frame(Strategy.JSON, {}, body, limit)
    return serialize(value, Strategy.PICKLE, limit=limit)


def payload_strategy(payload: bytes | None) -> Strategy | None:
    """The strategy an outpost payload claims by its code byte -- the only thing that decides
    how :func:`deserialize` reads it -- or None for anything else (sealed, garbage, None)."""
    if payload is None or len(payload) < len(MAGIC) + 1 or not payload.startswith(MAGIC):
        return None
    return _STRATEGIES.get(bytes(payload[len(MAGIC) : len(MAGIC) + 1]))


def deserialize(payload: bytes, *, data_only: bool = False) -> Any:
    """Rebuild the value in ``payload``; errors name the writer's and reader's versions.

    With ``data_only`` only a JSON payload is read; any other (a pickle or source text, which
    run code when loaded) raises before its header or body is looked at.  The strategy is
    taken from the code byte alone, never from the header, so a header claiming JSON cannot
    turn a pickle into data."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise SerializationError(f"payload must be bytes, got {type(payload).__name__}")
    data = bytes(payload)
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 2:
        raise SerializationError("payload does not start with outpost's serialization header")
    strategy = _STRATEGIES.get(data[len(MAGIC) : len(MAGIC) + 1])
    if strategy is None:
        raise SerializationError(
            f"unknown serialization strategy code {data[len(MAGIC) : len(MAGIC) + 1]!r}; "
            "the payload was written by a newer outpost: upgrade this side"
        )
    if data_only and strategy is not Strategy.JSON:
        raise SerializationError(
            f"payload is written with the {strategy.value} strategy, not as plain JSON data, "
            "and loading it could run code; it was not loaded"
        )
    newline = data.find(b"\n", len(MAGIC) + 1)
    if newline < 0:
        raise SerializationError("payload header is not terminated")
    try:
        header = json.loads(data[len(MAGIC) + 1 : newline])
    except ValueError as exc:
        raise SerializationError(f"payload header is not JSON: {exc}") from exc
    body = data[newline + 1 :]
    if strategy is Strategy.JSON:
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise SerializationError(f"JSON payload is invalid: {exc}") from exc
    if strategy is Strategy.SOURCE:
        return _load_source(body.decode(), str(header.get("name", "")))
    try:
        return cloudpickle.loads(body)
    except Exception as exc:
        raise _unpickling_error(header, exc) from exc


def _unpickling_error(header: dict[str, Any], exc: Exception) -> SerializationError:
    ours = runtime_versions()
    theirs = {"python": str(header.get("py", "?")), "cloudpickle": str(header.get("cp", "?"))}
    differing = [
        f"{name} {theirs[name]} (writer) vs {ours[name]} (reader)"
        for name in ("python", "cloudpickle")
        if theirs[name] != ours[name]
    ]
    if differing:
        return SerializerVersionMismatch(
            f"cannot unpickle payload ({type(exc).__name__}: {exc}); versions differ: "
            + "; ".join(differing)
            + ". Use the same Python minor version and cloudpickle on both sides, or register "
            "the function with Strategy.SOURCE"
        )
    return SerializationError(
        f"cannot unpickle payload ({type(exc).__name__}: {exc}); a module the value refers to "
        "may be missing on this side: install it where the task runs"
    )


def _function_name(fn: Any) -> str:
    name = getattr(fn, "__name__", "")
    if not callable(fn) or not name or name == "<lambda>":
        raise SerializationError(
            "the source strategy needs a named function defined with def; use Strategy.PICKLE "
            "for lambdas and other callables"
        )
    return str(name)


def _source_of(fn: Any) -> bytes:
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError) as exc:
        raise SerializationError(
            f"cannot read the source of {getattr(fn, '__name__', fn)!r}: {exc}; define it in a "
            "file (not an interactive prompt) or use Strategy.PICKLE"
        ) from exc
    return textwrap.dedent(source).encode()


def _load_source(source: str, name: str) -> Any:
    namespace: dict[str, Any] = {"__name__": "__outpost_source__"}
    try:
        exec(compile(source, f"<outpost function {name}>", "exec"), namespace)
    except Exception as exc:
        raise SerializationError(f"cannot rebuild function {name!r} from source: {exc}") from exc
    if name not in namespace:
        raise SerializationError(f"source payload does not define function {name!r}")
    return namespace[name]
