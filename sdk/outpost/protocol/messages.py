"""What every protocol message shares: one pydantic model per message, and how it crosses the wire.

A message's fields are declared once, on its model (:mod:`outpost.protocol.envelopes`); from
that declaration come its validation on decode, its dict and JSON forms, the engine's frame
headers (:meth:`ProtocolModel.header`: every field but the payloads) and its JSON Schema
(``Model.model_json_schema()``, which the service's OpenAPI document references).

Payload fields (:data:`Payload`) hold the bytes of :mod:`outpost.protocol.serialize`; in the
dict and JSON forms they are standard base64 text.  A validation failure becomes a
:class:`~outpost.errors.MalformedMessageError` that names the field, the value it got and what
it must be, so the side that dead-letters a message can log why.

Models accept unknown keys and drop them: a later protocol version may add fields without
breaking this one (fields that change meaning bump :data:`.version.PROTOCOL_VERSION` instead).
"""

from __future__ import annotations

import base64
import builtins
import difflib
import json
import reprlib
from functools import cache
from typing import Annotated, Any, ClassVar, TypeVar, Union, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)
from pydantic.fields import FieldInfo
from pydantic_core import CoreSchema, PydanticSerializationError, core_schema

from outpost.errors import MalformedMessageError
from outpost.protocol.version import PROTOCOL_VERSION, check_protocol_version


def b64encode(data: bytes | None) -> str | None:
    """Standard base64 text of ``data`` (what older peers decode with ``validate=True``)."""
    return None if data is None else base64.b64encode(data).decode("ascii")


def _from_base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:  # binascii.Error, or text that is not ASCII
        raise ValueError(f"must be standard base64 text ({exc})") from None


class _Base64Payload:
    """The schema of :data:`Payload`: bytes pass as they are, in pydantic-core (constructors,
    the engine's frames); text is decoded from base64 (a message's dict or JSON form)."""

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> CoreSchema:
        from_text = core_schema.no_info_after_validator_function(
            _from_base64, core_schema.str_schema(strict=True)
        )
        return core_schema.json_or_python_schema(
            json_schema=from_text,  # JSON has no bytes: a JSON string is always base64
            python_schema=core_schema.union_schema(
                [core_schema.bytes_schema(strict=True), from_text],
                custom_error_type="payload_type",
                custom_error_message="must be standard base64 text",
            ),
            serialization=core_schema.plain_serializer_function_ser_schema(
                b64encode, when_used="json"
            ),
        )

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: Any) -> dict[str, Any]:
        return {"type": "string", "contentEncoding": "base64"}


_PAYLOAD = _Base64Payload()

#: Bytes produced by :mod:`outpost.protocol.serialize`; base64 text in the dict and JSON forms.
Payload = Annotated[bytes, _PAYLOAD]


def _is_payload(field: FieldInfo) -> bool:
    """Whether ``field`` is a :data:`Payload` (or an optional one)."""
    if _PAYLOAD in field.metadata:
        return True
    options = get_args(field.annotation)
    return any(_PAYLOAD in getattr(option, "__metadata__", ()) for option in options)


def _is_part(annotation: Any) -> bool:
    """Whether a field of this type holds a :class:`ProtocolModel` (or an optional one)."""
    options = get_args(annotation) or (annotation,)
    return any(isinstance(o, type) and issubclass(o, ProtocolModel) for o in options)


def omitted_when_none(value: object) -> bool:
    """``exclude_if`` of additive optional fields: a message that does not use one stays
    exactly as it was before the field existed (older readers, and signatures, see the same)."""
    return value is None


M = TypeVar("M", bound="ProtocolModel")
E = TypeVar("E", bound="Envelope")


class ProtocolModel(BaseModel):
    """A message or a part of one (e.g. :class:`~.envelopes.ErrorInfo`).

    Constructors take the fields by keyword, or positionally in their declared order (as the
    dataclasses these models replaced did)."""

    # NaN and infinities are written as json.dumps writes them (null would not decode again)
    model_config = ConfigDict(extra="ignore", strict=True, ser_json_inf_nan="constants")

    #: Every field, in declared order.
    field_names: ClassVar[tuple[str, ...]] = ()
    #: Fields that take positional arguments, in their declared order.
    positional: ClassVar[tuple[str, ...]] = ()
    #: Fields that never do.
    keyword_only: ClassVar[tuple[str, ...]] = ()
    #: Fields holding payload bytes: left out of :meth:`header`, sent as frames of their own.
    payload_fields: ClassVar[frozenset[str]] = frozenset()
    #: The others, in order: the fields of :meth:`header`.
    header_fields: ClassVar[tuple[str, ...]] = ()
    #: Fields holding a nested model (or None), e.g. a result's ``error``.
    part_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, /, *args: Any, **fields: Any) -> None:
        if len(args) > len(self.positional):
            raise TypeError(
                f"{type(self).__name__}() takes at most {len(self.positional)} positional "
                f"arguments ({', '.join(self.positional)}), got {len(args)}"
            )
        for name, value in zip(self.positional, args, strict=False):
            if name in fields:
                raise TypeError(f"{type(self).__name__}() got two values for {name!r}")
            fields[name] = value
        super().__init__(**fields)

    # Validation (model_validate, nested models, JSON) need not go through this __init__: the
    # same marker lets pydantic's RootModel take its positional ``root`` (without it, every
    # validation would call __init__ and validate again, twice the time).
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.field_names = tuple(cls.model_fields)
        if "positional" not in cls.__dict__:  # a class may keep an older order of its own
            cls.positional = tuple(n for n in cls.field_names if n not in cls.keyword_only)
        cls.payload_fields = frozenset(
            name for name, field in cls.model_fields.items() if _is_payload(field)
        )
        cls.header_fields = tuple(
            name for name in cls.model_fields if name not in cls.payload_fields
        )
        cls.part_fields = tuple(
            name for name, field in cls.model_fields.items() if _is_part(field.annotation)
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict (payloads as base64 text): what the HTTP API embeds and what
        a signature covers."""
        return self.model_dump(mode="json")

    def header(self) -> dict[str, Any]:
        """The fields but the payloads, ready for ``json.dumps``: the JSON header of the
        engine's frames, whose payloads travel as raw frames beside it (never base64).  Built
        from the field values directly, without pydantic's serializer: it is on the engine's
        path of every task and result."""
        values = self.__dict__
        head = {name: values[name] for name in self.header_fields}
        for name in self.part_fields:
            if head[name] is not None:
                head[name] = head[name].to_dict()
        return head

    @classmethod
    def trusted(cls: type[M], values: dict[str, Any]) -> M:
        """A message of ``values`` that this side built or checked already (every field, of
        the right type; other keys are left out), not validated again.  ``model_construct``
        skips validation too, yet walks every field's aliases and defaults in Python: five
        times the time, on the engine's path of every task (``benchmarks/schema_choice.py``)."""
        message = cls.__new__(cls)
        set_attribute = object.__setattr__  # what BaseModel itself sets on a new instance
        set_attribute(message, "__dict__", {name: values[name] for name in cls.field_names})
        set_attribute(message, "__pydantic_fields_set__", set(cls.field_names))
        set_attribute(message, "__pydantic_extra__", None)
        set_attribute(message, "__pydantic_private__", None)
        return message

    @classmethod
    def from_json(cls: type[M], body: bytes | str) -> M:
        """Validate the JSON text ``body``, parsed and checked in one pass by pydantic-core;
        errors as :meth:`from_dict` names them."""
        try:
            return cls.model_validate_json(body)
        except ValidationError as exc:
            raise malformed(exc, cls) from None

    @classmethod
    def from_dict(cls: type[M], data: dict[str, Any]) -> M:
        """Validate ``data`` (a message's dict form): :class:`MalformedMessageError` names
        every field that is missing or wrong."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise malformed(exc, cls) from None


class Envelope(ProtocolModel):
    """A whole message on the AMQP wire: the protocol version ``v`` and its ``type`` come first,
    and :func:`decode_message` dispatches on both."""

    #: The ``type`` of this envelope (the default of its ``type`` field); also the AMQP
    #: message's ``type`` property.
    TYPE: ClassVar[str]
    keyword_only = ("v", "type")

    v: int = PROTOCOL_VERSION
    type: str

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.TYPE = cls.model_fields["type"].default
        # the first class of a type decodes it: a subclass (e.g. in a test) never takes over
        _ENVELOPES.setdefault(cls.TYPE, cls)
        _any_envelope.cache_clear()

    def to_bytes(self) -> bytes:
        """The AMQP body: compact UTF-8 JSON, encoded by pydantic-core without a dict; text
        that UTF-8 cannot hold (lone surrogates, e.g. from ``surrogateescape``d output in an
        error message) goes through ``json.dumps``, which escapes it."""
        try:
            return self.__pydantic_serializer__.to_json(self)
        except PydanticSerializationError:
            return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls: builtins.type[E], body: bytes | str | dict[str, Any]) -> E:
        """Decode ``body`` like :func:`decode_message`, and insist that it is a ``cls``."""
        message = decode_message(body)
        if not isinstance(message, cls):
            raise MalformedMessageError(f"expected a {cls.TYPE!r} message, got {message.TYPE!r}")
        return message


_ENVELOPES: dict[str, type[Envelope]] = {}


def json_object(body: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """The JSON object in ``body`` (a dict passes through), so a receiver that both checks a
    signature and decodes an envelope parses the message once."""
    if isinstance(body, dict):
        return body
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedMessageError(f"message is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedMessageError("message must be a JSON object")
    return data


def decode_message(body: bytes | str | dict[str, Any]) -> Envelope:
    """Parse any envelope, checking its protocol version, its type and every field.

    A body in bytes is parsed and validated in one pass by pydantic-core; a message that does
    not pass (or that lacks ``v``) is decoded again step by step, which names what is wrong
    in the order a reader needs it: JSON, protocol version, type, fields."""
    if not isinstance(body, dict):
        try:
            message = _any_envelope().validate_json(body)
        except ValidationError:
            pass
        else:
            if message.v == PROTOCOL_VERSION and "v" in message.model_fields_set:
                return message
    data = json_object(body)
    kind = data.get("type")
    check_protocol_version(data.get("v"), f"{kind if kind is not None else 'unknown'!r} message")
    envelope_type = _ENVELOPES.get(kind) if isinstance(kind, str) else None
    if envelope_type is None:
        raise MalformedMessageError(
            f"unknown message type {kind!r}; expected one of {sorted(_ENVELOPES)}"
            + _did_you_mean(kind, _ENVELOPES)
        )
    return envelope_type.from_dict(data)


@cache
def _any_envelope() -> TypeAdapter[Envelope]:
    """Every envelope type, told apart by ``type`` (built on first use: the envelopes are
    declared after this module)."""
    union: Any = Union[tuple(_ENVELOPES.values())]  # noqa: UP007 (a union built at run time)
    tagged: Any = Annotated[union, Field(discriminator="type")]
    return TypeAdapter(tagged)


# ------------------------------------------------------------------------------ errors
_short = reprlib.Repr()  # a value in an error message is cut short (it may be 8 MiB)
_short.maxstring = _short.maxother = 60


def malformed(error: ValidationError, model: type[ProtocolModel]) -> MalformedMessageError:
    """One :class:`MalformedMessageError` for every problem pydantic found in a message:
    ``'task' message lacks required field 'args'; field 'state' must be ..., got ...``."""
    what = f"{model.TYPE!r} message" if issubclass(model, Envelope) else model.__name__
    details = error.errors(include_url=False)
    missing = [_missing(detail) for detail in details if detail["type"] == "missing"]
    problems = [_wrong(detail) for detail in details if detail["type"] != "missing"]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        problems.insert(0, f"lacks required field{plural} {', '.join(missing)}")
    return MalformedMessageError(f"{what} {'; '.join(problems)}")


def _missing(detail: Any) -> str:
    """The missing field's path, and the near miss the sender may have meant."""
    given = detail["input"] if isinstance(detail["input"], dict) else {}
    return repr(_path(detail)) + _did_you_mean(str(detail["loc"][-1]), given)


def _wrong(detail: Any) -> str:
    """``field 'x' must be ..., got ...``: the field, what it must be and the value."""
    text = str(detail["msg"]).removeprefix("Value error, ")
    if text.startswith("Input should be "):  # pydantic's wording, e.g. the allowed values
        text = "must be " + text.removeprefix("Input should be ")
    return f"field {_path(detail)!r} {text}, got {_short.repr(detail['input'])}"


def _path(detail: Any) -> str:
    return ".".join(str(part) for part in detail["loc"])


def _did_you_mean(name: object, known: Any) -> str:
    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, [k for k in known if isinstance(k, str)], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
