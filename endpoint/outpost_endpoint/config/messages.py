"""pydantic's validation errors as ``config.yaml`` lines: each names the field by its YAML path,
the bad value and what is allowed, e.g.
``engine.type: 'foo' is not one of: process-pool, high-throughput``; an unknown key lists the
keys allowed there and suggests the one meant (``did you mean 'queue'?``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from outpost.runtime.settings import bounds, choices, closest, is_whole_number, members, shown

_NOT_A_MAPPING = ("model_type", "model_attributes_type", "dict_type")
_TYPE_ERRORS = {
    "int_type": "is not an integer",
    "int_parsing": "is not an integer",
    "int_from_float": "is not an integer",
    "float_type": "is not a number",
    "float_parsing": "is not a number",
    "finite_number": "is not a finite number",
}


def explain(error: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per problem pydantic found validating ``root``."""
    return [_line(details, _walk(root, details["loc"]), root) for details in error.errors()]


@dataclass
class _Place:
    """Where an error's ``loc`` points in the tree of sections."""

    path: list[str]
    #: the class of the section holding the last key, if known
    section: type[BaseModel] | None
    #: the classes its ``type`` key could have picked instead (empty: it has no such key)
    family: tuple[type[BaseModel], ...]
    #: the last key's declaration, where it names a field
    field: FieldInfo | None
    #: the classes the value at ``loc`` may be, if it is a section
    inner: tuple[type[BaseModel], ...]

    def at(self, key: str = "") -> str:
        return ".".join([*self.path, key] if key else self.path) or "(top level)"


def _walk(root: type[BaseModel], loc: tuple[int | str, ...]) -> _Place:
    place = _Place([], None, (), None, (root,))
    family: tuple[type[BaseModel], ...] = ()
    for part in loc:
        if isinstance(part, int):
            place.path[-1] += f"[{part}]"
            continue
        tagged = {_tag(model): model for model in place.inner} if len(place.inner) > 1 else {}
        if part in tagged:  # pydantic names the class a ``type`` picked: not a YAML key
            family, place.inner = place.inner, (tagged[part],)
            continue
        section = place.inner[0] if len(place.inner) == 1 else None
        field = section.model_fields.get(part) if section is not None else None
        inner = _models_in(field.annotation) if field is not None else ()
        place = _Place([*place.path, part], section, family, field, inner)
        family = ()
    return place


def _line(error: ErrorDetails, place: _Place, root: type[BaseModel]) -> str:
    kind, value, ctx = error["type"], error["input"], error.get("ctx", {})
    if kind == "extra_forbidden":
        return f"{place.at()}: {_unknown_key(place, root)}"
    if kind == "union_tag_invalid":
        allowed = ", ".join(_tag(model) for model in place.inner)
        return f"{place.at('type')}: {shown(ctx['tag'])} is not one of: {allowed}"
    if kind == "conflict":
        return f"{place.at(ctx['field'])}: {error['msg']}"
    if kind in _NOT_A_MAPPING:
        return f"{place.at()}: must be a mapping of keys to values, got {shown(value)}"
    return f"{place.at()}: {shown(value)} {_complaint(kind, error['msg'], place.field)}"


def _complaint(kind: str, message: str, field: FieldInfo | None) -> str:
    """What is wrong with a value, and what to write instead."""
    if field is None or kind == "invalid_value":
        return message
    low, high = bounds(field)
    unit = "a whole number" if is_whole_number(field) else "a number of seconds"
    if kind in _TYPE_ERRORS:
        return _TYPE_ERRORS[kind] + (f"; use {unit} >= {low}" if low is not None else "")
    if kind == "greater_than_equal":
        return f"is too small; use {unit} >= {low}"
    if kind == "less_than_equal":
        return f"is too large; use {unit} <= {high}"
    if kind == "bool_type":
        return "is not true or false"
    if kind == "literal_error":
        return f"is not one of: {', '.join(map(str, choices(field)))}"
    return message


def _unknown_key(place: _Place, root: type[BaseModel]) -> str:
    key, section = place.path[-1], place.section
    for other in place.family:
        if key in other.model_fields and section is not None and other is not section:
            owner = _tag(other)
            return (
                f"is only used by {place.path[-2]} type {owner} (type is {_tag(section)!r}); "
                f"remove it or set type: {owner}"
            )
    allowed = list(section.model_fields) if section is not None else []
    meant = closest(key, allowed)
    if meant is not None:
        hint = f"; did you mean {meant!r}?"
    else:  # perhaps a key put in the wrong section: name it with its path
        paths: dict[str, str] = {}
        for name, path in _keys_below(root):
            paths.setdefault(name, path)
        elsewhere = closest(key, paths)
        hint = f"; did you mean {paths[elsewhere]}?" if elsewhere is not None else ""
    return f"unknown key; allowed keys: {', '.join(allowed)}{hint}"


def _keys_below(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every key of ``model``'s tree with its dotted path."""
    for name, field in model.model_fields.items():
        yield name, prefix + name
        for inner in _models_in(field.annotation):
            yield from _keys_below(inner, f"{prefix}{name}.")


def _tag(model: type[BaseModel]) -> str:
    return str(model.model_fields["type"].default)


def _models_in(annotation: Any) -> tuple[type[BaseModel], ...]:
    """The section classes a field's annotation names (one, or the members of a union)."""
    return tuple(
        model
        for model in members(annotation)
        if isinstance(model, type) and issubclass(model, BaseModel)
    )
