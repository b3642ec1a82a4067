"""Futures passed as arguments are dependencies.

For now they are resolved client-side: the submitter holds a task until its parents are done,
then substitutes their values.  (A later version lets the service hold dependent tasks, so the
submitting process may exit.)  Futures are found in positional and keyword arguments, also
inside lists, tuples and dicts, at any depth.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from outpost.errors import DependencyError

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
