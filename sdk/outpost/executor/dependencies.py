"""Futures passed as arguments are dependencies.

The service holds dependent tasks: the submitter waits only until every parent has its task id
(the service's answer to the parent's batch, a fraction of a second), then sends the child
with each future replaced by a :class:`~outpost.protocol.dependencies.ParentRef` and the
parents named in ``depends_on`` (:func:`to_refs`).  The service keeps the child ``waiting``
until its parents succeeded and the worker substitutes their values, so once the executor has
sent everything (``shutdown``, or leaving its ``with`` block) the submitting process may exit.

Why ids from the service rather than ids the client makes up: a task id stays the service's
(unique, owned, checked at insert like today); the cost is one batch round trip per level of
the graph while submitting, not per task (siblings of a level share batches).

Resolved here, client-side, as before (the process must stay until the parents are done):
parents that are not Outpost futures (any ``concurrent.futures.Future``), end-to-end encrypted
executors (the service cannot hand a sealed result to another task) and endpoints shared with
you (their arguments must be JSON data).  Futures are found in positional and keyword
arguments, also inside lists, tuples and dicts, at any depth.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from outpost.errors import DependencyError
from outpost.protocol.dependencies import ParentRef

_MAX_DEPTH = 100


def find_futures(obj: Any) -> list[Future[Any]]:
    """Every future in ``obj`` (each once, in order of appearance)."""
    found: dict[int, Future[Any]] = {}
    _walk(obj, found, 0)
    return list(found.values())


def _walk(obj: Any, found: dict[int, Future[Any]], depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    if isinstance(obj, Future):
        found.setdefault(id(obj), obj)
    elif type(obj) in (list, tuple):
        for item in obj:
            _walk(item, found, depth + 1)
    elif type(obj) is dict:
        for value in obj.values():
            _walk(value, found, depth + 1)


def substitute(obj: Any, _depth: int = 0) -> Any:
    """A copy of ``obj`` with every (finished) future replaced by its result."""
    if _depth > _MAX_DEPTH:
        return obj
    if isinstance(obj, Future):
        return obj.result(timeout=0)
    if type(obj) in (list, tuple):
        return type(obj)(substitute(item, _depth + 1) for item in obj)
    if type(obj) is dict:
        return {key: substitute(value, _depth + 1) for key, value in obj.items()}
    return obj


def to_refs(obj: Any, _depth: int = 0) -> Any:
    """A copy of ``obj`` with every future replaced by a ``ParentRef`` to its task id (every
    future must have one)."""
    if _depth > _MAX_DEPTH:
        return obj
    if isinstance(obj, Future):
        return ParentRef(str(getattr(obj, "task_id", None)))
    if type(obj) in (list, tuple):
        return type(obj)(to_refs(item, _depth + 1) for item in obj)
    if type(obj) is dict:
        return {key: to_refs(value, _depth + 1) for key, value in obj.items()}
    return obj


def placeholder(obj: Any, _depth: int = 0) -> Any:
    """``obj`` with futures replaced by ``None``: checks the rest pickles at submit time."""
    if _depth > _MAX_DEPTH:
        return obj
    if isinstance(obj, Future):
        return None
    if type(obj) in (list, tuple):
        return type(obj)(placeholder(item, _depth + 1) for item in obj)
    if type(obj) is dict:
        return {key: placeholder(value, _depth + 1) for key, value in obj.items()}
    return obj


def failed_parent(parents: list[Future[Any]], name: str) -> DependencyError | None:
    """The error for a task whose parent failed or was cancelled, or ``None`` if all succeeded."""
    for parent in parents:
        task_id = getattr(parent, "task_id", None) or "(never submitted)"
        if parent.cancelled():
            return DependencyError(
                f"{name} was not run: its dependency task {task_id} was cancelled"
            )
        exc = parent.exception(timeout=0)
        if exc is not None:
            error = DependencyError(
                f"{name} was not run: its dependency task {task_id} failed with "
                f"{type(exc).__name__}: {exc}"
            )
            error.__cause__ = exc
            return error
    return None
