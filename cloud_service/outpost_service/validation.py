"""Reading and checking request input; every failure is an :class:`ApiError` that says which
field was wrong, with which value, and what is expected.

JSON bodies are parsed here rather than by Flask so that malformed, non-standard (``NaN``) and
pathologically nested JSON all become clear 400s instead of 500s.  Their fields are checked by
the request models (:mod:`.api.bodies`) built from the field types below; :func:`parse` turns
the first thing pydantic refuses into the service's error answer, naming the field the way a
client writes it (``tasks[3].endpoint_id``).
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn, TypeVar

from flask import request
from pydantic import (
    AfterValidator,
    BaseModel,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import ErrorDetails, PydanticCustomError, core_schema

from outpost_service.errors import ApiError, BadRequest, PayloadTooLarge, Unprocessable

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
FUNCTION_ID_PATTERN = re.compile(r"[0-9a-f]{64}")
CLIENT_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
#: Deepest nesting accepted inside free-form objects (metadata, resource specifications):
#: they are re-encoded later, far down the stack, where deep values would fail.
MAX_OBJECT_DEPTH = 32

Model = TypeVar("Model", bound=BaseModel)


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
            f"request body must be a JSON object, got {json_type(body)}", code="invalid_body"
        )
    return body


def parse(model: type[Model], body: dict[str, Any], context: dict[str, Any]) -> Model:
    """``body`` checked and converted by ``model``; ``context`` holds the limits that depend on
    the service's configuration (``config``)."""
    try:
        return model.model_validate(body, context=context)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # A misspelt field also shows as a missing one: the misspelling says more.
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        raise _api_error(model, first) from None


def refuse(message: str, code: str = "invalid_field", **details: Any) -> PydanticCustomError:
    """What a field check raises: ``message`` follows the field's name (``"must be ..."``);
    ``code`` and ``details`` go to the error answer (a refusal of the whole body, raised by a
    model validator, is answered without a field)."""
    return PydanticCustomError(code, message, {"details": details})


#: Our refusal codes, and the answer each becomes (any other is a 422 ``invalid_field``).
_REFUSALS: dict[str, type[ApiError]] = {
    "invalid_field": Unprocessable,
    "batch_too_large": Unprocessable,
    "payload_too_large": PayloadTooLarge,
}

#: pydantic's type errors, as this service has always worded them.
_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def _api_error(model: type[BaseModel], error: ErrorDetails) -> ApiError:
    field = field_path(error["loc"])
    kind = error["type"]
    context = error.get("ctx") or {}
    details = dict(context.get("details") or {})
    if kind in _REFUSALS:
        message = error["msg"]
    elif kind == "missing":
        message = "is required"
    elif kind in _EXPECTED:
        message = f"must be {_EXPECTED[kind]}, got {json_type(error['input'])}"
    elif kind == "too_long":
        message = f"may hold at most {context['max_length']} items, got {len(error['input'])}"
    elif kind == "too_short":
        message = f"must hold at least {context['min_length']} item(s), got none"
    elif kind == "extra_forbidden":
        message = _unknown_field(model, str(error["loc"][-1]))
    elif kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(context.get("expected", "")))
        message = f"must be one of {', '.join(allowed)}, got {shown(error['input'])}"
        message += _did_you_mean(error["input"], allowed)
        details["allowed"] = allowed
    else:
        message = error["msg"].replace("Input should be", "must be", 1)
        message += f", got {shown(error['input'])}"
    status = _REFUSALS.get(kind, Unprocessable)
    code = kind if kind in _REFUSALS else "invalid_field"
    if not field:
        return status(message, code=code, details=details)
    return status(f"field {field!r} {message}", code=code, details={"field": field, **details})


def _unknown_field(model: type[BaseModel], name: str) -> str:
    known = list(model.model_fields)
    return (
        f"is not a field of this request, which takes {', '.join(map(repr, known))}"
        + _did_you_mean(name, known)
    )


def _did_you_mean(given: Any, choices: list[str]) -> str:
    guess = difflib.get_close_matches(given, choices, n=1) if isinstance(given, str) else []
    return f" (did you mean {guess[0]!r}?)" if guess else ""


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("tasks", 3, "args")`` as a client writes it: ``tasks[3].args``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def json_type(value: Any) -> str:
    """The JSON name of ``value``'s type, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def shown(value: Any) -> str:
    """``value`` for a message: text cut to 80 characters, numbers as they are, lists and
    objects by their type."""
    if isinstance(value, str):
        return repr(value[:80])
    return json_type(value) if isinstance(value, (list, dict)) else repr(value)


def invalid(field: str, message: str) -> Unprocessable:
    """The 422 of one field, for checks made outside the request models (path parts, stored
    state such as unknown user names)."""
    return Unprocessable(
        f"field {field!r} {message}", code="invalid_field", details={"field": field}
    )


def uuid_text(value: Any, field: str) -> str:
    """The canonical (lower-case, hyphenated) form of a UUID given as text."""
    try:
        return _uuid(value)
    except PydanticCustomError as exc:
        raise invalid(field, exc.message()) from None


# ---------------------------------------------------------------------------- field types
@dataclass(frozen=True)
class Matching:
    """Marks text that must match ``pattern`` whole; ``expected`` says what, in a refusal and
    in the JSON schema."""

    pattern: re.Pattern[str]
    expected: str

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.update(pattern=f"^{self.pattern.pattern}$", description=self.expected)
        return json_schema

    def _check(self, value: str) -> str:
        if not self.pattern.fullmatch(value):
            raise refuse(f"must be {self.expected}, got {value[:80]!r}")
        return value


def _uuid(value: Any) -> str:
    if not isinstance(value, str):
        raise refuse(f"must be a UUID string, got {json_type(value)}")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise refuse(f"must be a UUID like {uuid.uuid4()}, got {value[:80]!r}") from None


def _payload(value: Any, info: ValidationInfo) -> bytes:
    """A base64 payload field decoded, within the service's per-payload limit (413)."""
    if not isinstance(value, str):
        raise refuse(f"must be base64 text, got {json_type(value)}")
    limit = info.context["config"].payload_limit if info.context else None
    if limit is not None and len(value) // 4 * 3 > limit + 2:
        raise _too_large(len(value) // 4 * 3, limit)
    try:
        data = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise refuse("is not valid base64 text") from None
    if limit is not None and len(data) > limit:
        raise _too_large(len(data), limit)
    return data


def _too_large(size: int, limit: int) -> PydanticCustomError:
    return refuse(
        f"holds a payload of {size:,} bytes, over the limit of {limit:,} bytes; pass large "
        "data by reference (a file path on the cluster)",
        "payload_too_large",
        size=size,
        limit=limit,
    )


def _shallow(value: dict[str, Any]) -> dict[str, Any]:
    """A free-form object at most :data:`MAX_OBJECT_DEPTH` deep."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_OBJECT_DEPTH:
            raise refuse(f"is nested deeper than {MAX_OBJECT_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return value


def json_size(value: Any) -> int:
    """Bytes of ``value``'s compact JSON encoding."""
    return len(json.dumps(value, separators=(",", ":")).encode())


Uuid = Annotated[str, PlainValidator(_uuid), WithJsonSchema({"type": "string", "format": "uuid"})]
Name = Annotated[
    str,
    Matching(
        NAME_PATTERN,
        "1-64 characters of letters, digits, '_', '.', '-' starting with a letter or digit",
    ),
]
FunctionId = Annotated[
    str,
    Matching(
        FUNCTION_ID_PATTERN, "a function id (64 lower-case hex digits from POST /v1/functions)"
    ),
]
#: A client's own id for a request or for itself (a uuid4 is ideal).
ClientToken = Annotated[
    str, Matching(CLIENT_TOKEN_PATTERN, "1-64 letters, digits or '_.:-' (a uuid4 is ideal)")
]
Payload = Annotated[
    bytes,
    PlainValidator(_payload),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]
SmallObject = Annotated[dict[str, Any], AfterValidator(_shallow)]
