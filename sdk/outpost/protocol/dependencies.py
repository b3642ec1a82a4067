"""Where a task's arguments name the results of other tasks.

The SDK replaces each future among a task's arguments by a :class:`ParentRef` (the parent's
task id) before pickling them, and lists the parents in ``TaskRequest.depends_on``.  The
service holds the task until the parents succeeded and then sends it with their result values
as opaque bytes (``TaskEnvelope.parent_values``): it never unpickles them.  The worker, after
unpickling the arguments, puts each parent's value where its reference was
(:func:`resolve`).  References are found in positional and keyword arguments, also inside
lists, tuples and dicts, at any depth up to :data:`MAX_DEPTH`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_DEPTH", "ParentRef", "references", "resolve"]

#: How deep into nested lists, tuples and dicts references are looked for.
MAX_DEPTH = 100


@dataclass(frozen=True)
class ParentRef:
    """Stands for the result of task ``task_id`` in a task's pickled arguments."""

    task_id: str


def references(obj: Any, _depth: int = 0) -> list[str]:
    """The task ids of the :class:`ParentRef` objects in ``obj`` (each once, in order)."""
    found: dict[str, None] = {}
    _collect(obj, found, _depth)
    return list(found)


def _collect(obj: Any, found: dict[str, None], depth: int) -> None:
    if depth > MAX_DEPTH:
        return
    if isinstance(obj, ParentRef):
        found.setdefault(obj.task_id)
    elif type(obj) in (list, tuple):
        for item in obj:
            _collect(item, found, depth + 1)
    elif type(obj) is dict:
        for value in obj.values():
            _collect(value, found, depth + 1)


def resolve(obj: Any, values: dict[str, Any], _depth: int = 0) -> Any:
    """A copy of ``obj`` with each :class:`ParentRef` replaced by ``values[task_id]``.

    Raises ``KeyError`` naming the task id of a reference with no value."""
    if _depth > MAX_DEPTH:
        return obj
    if isinstance(obj, ParentRef):
        return values[obj.task_id]
    if type(obj) in (list, tuple):
        return type(obj)(resolve(item, values, _depth + 1) for item in obj)
    if type(obj) is dict:
        return {key: resolve(value, values, _depth + 1) for key, value in obj.items()}
    return obj
