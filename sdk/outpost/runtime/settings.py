"""What the service's settings and the endpoint's ``config.yaml`` share: both are pydantic models,
and a mistake in either is reported as one line naming the setting, the bad value and what is
allowed, with a suggestion for a misspelt name.

The error texts are written here once instead of in every validator, from pydantic's error
types and the field's own declaration (its type, bounds and allowed values), so a new field
gets good messages without writing any.
"""

from __future__ import annotations

import difflib
import reprlib
import types
import typing
from collections.abc import Iterable
from typing import Any, Literal, get_args, get_origin

import annotated_types
from pydantic.fields import FieldInfo

_REPR = reprlib.Repr()
_REPR.maxstring = 80
_REPR.maxother = 80


def shown(value: Any) -> str:
    """``repr(value)``, shortened: a value that is refused may be huge (a list of a billion
    items must not be printed, or even turned into text, in full)."""
    return _REPR.repr(value)


def closest(word: str, known: Iterable[str]) -> str | None:
    """The known name ``word`` most looks like a misspelling of, if any."""
    close = difflib.get_close_matches(word, list(known), n=1)
    return close[0] if close else None


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """``"; did you mean 'queue'?"`` when ``word`` looks like a misspelling of a known name,
    else ``""``."""
    meant = closest(word, known)
    return f"; did you mean {meant!r}?" if meant is not None else ""


def choices(field: FieldInfo) -> tuple[Any, ...]:
    """The values a ``Literal`` field (possibly optional) allows, in their declared order."""
    for arg in members(field.annotation):
        if get_origin(arg) is Literal:
            return get_args(arg)
    return ()


def is_whole_number(field: FieldInfo) -> bool:
    """Whether the field holds an ``int`` (else, for number errors, it holds seconds)."""
    return int in members(field.annotation)


def bounds(field: FieldInfo) -> tuple[Any, Any]:
    """The field's smallest and largest allowed values (``None`` where unbounded)."""
    low = high = None
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            low = item.ge
        elif isinstance(item, annotated_types.Le):
            high = item.le
    return low, high


def members(annotation: Any) -> tuple[Any, ...]:
    """The types an annotation stands for: each member of a union, without ``None`` and
    without ``Annotated`` metadata."""
    if get_origin(annotation) is typing.Annotated:
        return members(get_args(annotation)[0])
    if get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(member for arg in get_args(annotation) for member in members(arg))
    return () if annotation is type(None) else (annotation,)
