"""Signed task messages: the service signs, the endpoint verifies (Ed25519).

Why: RabbitMQ permissions stop other *endpoints* from writing to a task queue, but whoever holds
a broker login with wider rights (a leaked service password, a broker operator, a bug in the
permission set-up) could still inject or alter tasks -- that is, run code on an HPC login node
under the endpoint owner's account.  The service signs every task and cancel message with its
own Ed25519 key; the endpoint learns the public key at registration, pins it in endpoint.json,
and rejects what does not verify.

What is signed: the canonical JSON (sorted keys, no spaces, ASCII) of the message's dict minus
its ``sig`` field.  That covers the payloads, ``task_id``, ``endpoint_id`` (a message signed for
endpoint A is refused by B) and ``issued_at`` (a message older than the endpoint's window is
refused, which bounds replays; younger replays are caught by the endpoint journal's task-id
tombstones, kept just as long).  ``sig`` is base64 of the 64-byte signature.

The fields are additive: an endpoint without a pinned key accepts unsigned messages (protocol
version 1 is unchanged); one with a key refuses them.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from outpost.errors import MalformedMessageError
from outpost.protocol.envelopes import json_object

ALGORITHM = "ed25519"
#: Default age after which a signed message is refused: 7 days, the endpoint journal's
#: tombstone lifetime (a younger replay is recognised by its task id).
DEFAULT_MAX_AGE = 7 * 24 * 3600.0
#: How far in the future ``issued_at`` may be (clocks of service and login node differ).
CLOCK_SKEW = 300.0


class SignatureError(MalformedMessageError):
    """A message is unsigned (where a signature is required), tampered, for another endpoint,
    or outside its time window."""


class Signable(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


def canonical(data: dict[str, Any]) -> bytes:
    """The bytes that are signed: ``data`` without ``sig``, as canonical JSON."""
    unsigned = {k: v for k, v in data.items() if k != "sig"}
    return json.dumps(
        unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def new_private_key() -> str:
    """A fresh Ed25519 private key, as base64 of its 32 raw bytes."""
    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return base64.b64encode(raw).decode("ascii")


def _raw_key(text: str, what: str, size: int = 32) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, AttributeError) as exc:
        raise SignatureError(f"{what} is not base64: {exc}") from exc
    if len(raw) != size:
        raise SignatureError(f"{what} must be {size} bytes, got {len(raw)}")
    return raw


class Signer:
    """Signs messages with the service's private key."""

    def __init__(self, private_key: str) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(_raw_key(private_key, "private key"))
        raw = self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        #: Base64 of the raw public key: what endpoints are given.
        self.public_key = base64.b64encode(raw).decode("ascii")

    def sign(self, data: dict[str, Any], *, now: float | None = None) -> dict[str, Any]:
        """``data`` with ``issued_at`` (now, unless already set) and ``sig`` added."""
        signed = json.loads(self._signed(data, now))
        assert isinstance(signed, dict)
        return signed

    def signed_bytes(self, envelope: Signable, *, now: float | None = None) -> bytes:
        """The AMQP body of ``envelope``, signed."""
        return self._signed(envelope.to_dict(), now)

    def _signed(self, data: dict[str, Any], now: float | None) -> bytes:
        unsigned = {k: v for k, v in data.items() if k != "sig"}
        if unsigned.get("issued_at") is None:
            unsigned["issued_at"] = time.time() if now is None else now
        message = canonical(unsigned)
        sig = base64.b64encode(self._key.sign(message))
        # The body *is* the signed text plus the signature: one JSON encoding per message.
        return message[:-1] + b',"sig":"' + sig + b'"}'


class Verifier:
    """Checks messages against the service's public key (see the module docstring)."""

    def __init__(self, public_key: str, *, max_age: float = DEFAULT_MAX_AGE) -> None:
        self._key = Ed25519PublicKey.from_public_bytes(_raw_key(public_key, "public key"))
        self.public_key = public_key
        self.max_age = float(max_age)

    def verify(
        self, body: bytes | dict[str, Any], endpoint_id: str, *, now: float | None = None
    ) -> None:
        """Return if ``body`` is signed by the service for ``endpoint_id`` within the time
        window; raise :class:`SignatureError` naming the reason otherwise."""
        try:
            data = json_object(body)
        except MalformedMessageError as exc:
            raise SignatureError(str(exc)) from exc
        sig = data.get("sig")
        if sig is None:
            raise SignatureError(
                "message is not signed, and this endpoint holds the service's signing key "
                "(endpoint.json task_signing_key): only signed messages are accepted"
            )
        if not isinstance(sig, str):
            raise SignatureError("field 'sig' must be base64 text")
        try:
            self._key.verify(_raw_key(sig, "signature", 64), canonical(data))
        except InvalidSignature:
            raise SignatureError(
                "signature does not match: the message was altered or not signed by the "
                "service this endpoint registered with"
            ) from None
        except (ValueError, TypeError) as exc:  # e.g. NaN in the body: not canonical JSON
            raise SignatureError(f"message cannot be checked: {exc}") from exc
        if data.get("endpoint_id") != endpoint_id:
            raise SignatureError(
                f"message was signed for endpoint {data.get('endpoint_id')!r}, not this one "
                f"({endpoint_id})"
            )
        issued = data.get("issued_at")
        if not isinstance(issued, (int, float)) or isinstance(issued, bool):
            raise SignatureError("signed message lacks a numeric 'issued_at'")
        now = time.time() if now is None else now
        if now - issued > self.max_age:
            raise SignatureError(
                f"message was issued {now - issued:.0f} s ago, over this endpoint's window of "
                f"{self.max_age:.0f} s (a replay, or clocks far apart)"
            )
        if issued - now > CLOCK_SKEW:
            raise SignatureError(
                f"message is issued {issued - now:.0f} s in the future (more than {CLOCK_SKEW:.0f}"
                " s of clock skew); check the clocks of the service and this host"
            )
