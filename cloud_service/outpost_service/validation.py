"""Reading and checking request input; every failure is an :class:`ApiError` that says which
field was wrong, with which value, and what is expected.

JSON bodies are parsed here rather than by Flask so that malformed, non-standard (``NaN``) and
pathologically nested JSON all become clear 400s instead of 500s.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from typing import Any, NoReturn

from flask import request

from outpost_service.errors import BadRequest, PayloadTooLarge, Unprocessable

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
FUNCTION_ID_PATTERN = re.compile(r"[0-9a-f]{64}")
_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    list: "a list",
    dict: "an object",
    bool: "a boolean",
}


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def json_body() -> dict[str, Any]:
    """The request body as a JSON object (400 if unparseable, 422 if not an object)."""
    data = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: werkzeug raises 413
    if not data.strip():
        raise BadRequest("request body is empty; send a JSON object", code="malformed_json")
    try:
        body = json.loads(data, parse_constant=_reject_constant)
    except RecursionError:
        raise BadRequest(
            "request body is nested too deeply to parse; send flatter JSON", code="malformed_json"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", code="malformed_json") from None
    if not isinstance(body, dict):
        raise Unprocessable(
            f"request body must be a JSON object, got {_json_type(body)}", code="invalid_body"
        )
    return body


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, float):
        return "a number"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def invalid(field: str, message: str) -> Unprocessable:
    return Unprocessable(
        f"field {field!r} {message}", code="invalid_field", details={"field": field}
    )


def get_field(
    body: dict[str, Any], name: str, kind: type, *, required: bool = True, where: str = ""
) -> Any:
    """``body[name]`` checked to be of ``kind``; None if absent (or null) and not required."""
    field = f"{where}{name}"
    value = body.get(name)
    if value is None:
        if required:
            raise invalid(field, f"is required ({_TYPE_NAMES.get(kind, kind.__name__)})")
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise invalid(
            field, f"must be {_TYPE_NAMES.get(kind, kind.__name__)}, got {_json_type(value)}"
        )
    return value


def uuid_text(value: Any, field: str) -> str:
    """The canonical (lower-case, hyphenated) form of a UUID given as text."""
    if not isinstance(value, str):
        raise invalid(field, f"must be a UUID string, got {_json_type(value)}")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise invalid(field, f"must be a UUID like {uuid.uuid4()}, got {value[:80]!r}") from None


def name_text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        shown = value[:80] if isinstance(value, str) else _json_type(value)
        raise invalid(
            field,
            f"must be 1-64 characters of letters, digits, '_', '.', '-' starting with a letter "
            f"or digit, got {shown!r}",
        )
    return value


def function_id_text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not FUNCTION_ID_PATTERN.fullmatch(value):
        shown = value[:80] if isinstance(value, str) else _json_type(value)
        raise invalid(
            field,
            f"must be a function id (64 lower-case hex digits from POST /v1/functions), "
            f"got {shown!r}",
        )
    return value


def payload_bytes(value: Any, field: str, limit: int) -> bytes:
    """Decode a base64 payload field, enforcing the per-payload ``limit`` (413)."""
    if not isinstance(value, str):
        raise invalid(field, f"must be base64 text, got {_json_type(value)}")
    if len(value) // 4 * 3 > limit + 2:
        raise _too_large(field, len(value) // 4 * 3, limit)
    try:
        data = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise invalid(field, "is not valid base64 text") from None
    if len(data) > limit:
        raise _too_large(field, len(data), limit)
    return data


def json_size_within(value: Any, field: str, limit: int) -> None:
    """Refuse (413) a free-form JSON ``value`` whose compact encoding is over ``limit`` bytes:
    it is stored and returned in every listing, so it must stay small."""
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > limit:
        raise PayloadTooLarge(
            f"field {field!r} is {size:,} bytes of JSON, over the limit of {limit:,} bytes; "
            "keep it to a few facts (host, versions, settings), or ask the operator to raise "
            "max_metadata_bytes (OUTPOST_MAX_METADATA_BYTES)",
            details={"field": field, "size": size, "limit": limit},
        )


def _too_large(field: str, size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"field {field!r} holds a payload of {size:,} bytes, over the limit of {limit:,} bytes; "
        "pass large data by reference (a file path on the cluster)",
        details={"field": field, "size": size, "limit": limit},
    )


#: Deepest nesting accepted inside free-form objects (metadata, resource specifications):
#: they are re-encoded later, far down the stack, where deep values would fail.
MAX_OBJECT_DEPTH = 32


def small_object(body: dict[str, Any], name: str, *, where: str = "") -> dict[str, Any] | None:
    """An optional free-form JSON object field, at most :data:`MAX_OBJECT_DEPTH` deep."""
    value: dict[str, Any] | None = get_field(body, name, dict, required=False, where=where)
    if value is not None:
        stack: list[tuple[Any, int]] = [(value, 1)]
        while stack:
            item, depth = stack.pop()
            if depth > MAX_OBJECT_DEPTH:
                raise invalid(f"{where}{name}", f"is nested deeper than {MAX_OBJECT_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            if isinstance(item, (dict, list)):
                stack.extend((child, depth + 1) for child in children)
    return value
