"""Sealed payloads: end-to-end encryption between the SDK and an endpoint.

A *sealed box* in the style of libsodium's ``crypto_box_seal``, built from ``cryptography``:
for each message the sender makes a fresh X25519 key pair, agrees a secret with the
recipient's public key, derives an AES-256-GCM key with HKDF-SHA256 and encrypts.  Only the
holder of the recipient's private key can open it; the service, which stores and forwards the
bytes, cannot.  The layout is ``MAGIC + ephemeral public key (32) + nonce (12) + ciphertext``.

``aad`` (associated data) binds a sealed payload to its context -- the task it belongs to --
so that whoever forwards it cannot move it to another task: opening with another context
fails exactly like a wrong key or tampered bytes.  Sealing authenticates nothing about the
*sender* (anyone may seal for a public key); what it gives is confidentiality plus integrity
of the bytes in their context.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from outpost.errors import SealingError
from outpost.protocol.serialize import Strategy, deserialize, payload_strategy, serialize

#: Starts every sealed payload; distinct from :data:`outpost.protocol.serialize.MAGIC`.
SEAL_MAGIC = b"\x00OPS1"
_KEY = 32
_NONCE = 12
_TAG = 16
_HEADER = len(SEAL_MAGIC) + _KEY + _NONCE
_INFO = b"outpost sealed payload v1"


def is_sealed(payload: bytes | None) -> bool:
    """Whether ``payload`` is a sealed payload (as opposed to a plain serialized one)."""
    return bool(payload) and bytes(payload).startswith(SEAL_MAGIC)  # type: ignore[arg-type]


def generate_private_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def private_key_bytes(key: X25519PrivateKey) -> bytes:
    """The 32 raw bytes of ``key``, for a 0600 key file."""
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def private_key_from_bytes(data: bytes, source: str = "the key") -> X25519PrivateKey:
    if len(data) != _KEY:
        raise SealingError(
            f"{source} is not an X25519 private key ({len(data)} bytes, expected {_KEY}); "
            "delete it to make a new one (payloads sealed for the old key are then unreadable)"
        )
    return X25519PrivateKey.from_private_bytes(data)


def public_key_text(key: X25519PrivateKey | X25519PublicKey) -> str:
    """The public half of ``key`` as base64 text (what endpoints and clients exchange)."""
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def public_key_from_text(text: object, source: str = "public key") -> X25519PublicKey:
    """Parse base64 text from :func:`public_key_text`, with an error naming ``source``."""
    if not isinstance(text, str):
        raise SealingError(f"{source} must be base64 text, got {type(text).__name__}")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise SealingError(f"{source} is not valid base64: {text!r}") from exc
    if len(raw) != _KEY:
        raise SealingError(f"{source} must be a {_KEY}-byte X25519 key, got {len(raw)} bytes")
    return X25519PublicKey.from_public_bytes(raw)


def key_fingerprint(key: X25519PrivateKey | X25519PublicKey) -> str:
    """``sha256:<hex>`` of the raw public key: what a user compares out of band (the endpoint
    logs its own at start) and what the SDK pins per endpoint (:mod:`outpost.endpoint_keys`)."""
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return "sha256:" + hashlib.sha256(_raw(public)).hexdigest()


def _derive(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=_KEY, salt=ephemeral + recipient, info=_INFO)
    return hkdf.derive(shared)


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def seal(plaintext: bytes, recipient: X25519PublicKey, aad: bytes) -> bytes:
    """Encrypt ``plaintext`` so that only ``recipient``'s private key opens it, in context
    ``aad``."""
    ephemeral = X25519PrivateKey.generate()
    ephemeral_raw = _raw(ephemeral.public_key())
    key = _derive(ephemeral.exchange(recipient), ephemeral_raw, _raw(recipient))
    nonce = os.urandom(_NONCE)
    return (
        SEAL_MAGIC + ephemeral_raw + nonce + AESGCM(key).encrypt(nonce, plaintext, SEAL_MAGIC + aad)
    )


def open_sealed(
    data: bytes, private_key: X25519PrivateKey, aad: bytes, what: str = "payload"
) -> bytes:
    """Decrypt a payload from :func:`seal`; :class:`SealingError` says why it cannot be opened."""
    if not data.startswith(SEAL_MAGIC):
        raise SealingError(f"the {what} is not a sealed payload (it lacks the sealing header)")
    if len(data) < _HEADER + _TAG:
        raise SealingError(
            f"the sealed {what} is truncated ({len(data)} bytes, at least {_HEADER + _TAG} needed)"
        )
    ephemeral_raw = data[len(SEAL_MAGIC) : len(SEAL_MAGIC) + _KEY]
    nonce = data[len(SEAL_MAGIC) + _KEY : _HEADER]
    try:
        ephemeral = X25519PublicKey.from_public_bytes(ephemeral_raw)
        key = _derive(
            private_key.exchange(ephemeral), ephemeral_raw, _raw(private_key.public_key())
        )
        return AESGCM(key).decrypt(nonce, data[_HEADER:], SEAL_MAGIC + aad)
    except (InvalidTag, ValueError) as exc:
        raise SealingError(
            f"cannot open the sealed {what}: it was sealed for another key, was altered, or "
            "belongs to another task"
        ) from exc


# ---------------------------------------------------------------------------- task contexts
#: Reserved ``resource_specification`` key carrying the client's public key (base64): the
#: endpoint seals the task's result and error for it.  The service stores and forwards it
#: like any other resource field, without understanding it.
RESULT_KEY_FIELD = "_outpost_result_key"


def args_context(
    endpoint_id: str, function_id: str, task_group_id: str | None, result_key: str | None
) -> bytes:
    """The associated data of a task's sealed arguments.

    The service chooses task ids, so the client cannot bind arguments to one; it binds them to
    what it does choose: the endpoint, the function, the task group and the key that the result
    is to be sealed for (so a service that swapped in its own result key makes the arguments
    unreadable instead of reading the result)."""
    parts = ("args", endpoint_id, function_id, task_group_id or "", result_key or "")
    return "\0".join(parts).encode()


def result_context(task_id: str) -> bytes:
    """The associated data of a task's sealed result value: its task id."""
    return b"result\0" + task_id.encode()


def error_context(task_id: str) -> bytes:
    """The associated data of a task's sealed error details: its task id."""
    return b"error\0" + task_id.encode()


# ---------------------------------------------------------------------------- key files
def load_or_create_key(path: Path) -> X25519PrivateKey:
    """The private key in ``path`` (raw 32 bytes, mode 0600), made on first use.

    Created with ``O_EXCL`` so two processes starting at once agree on one key."""
    try:
        return private_key_from_bytes(path.read_bytes(), str(path))
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = generate_private_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return private_key_from_bytes(path.read_bytes(), str(path))
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_key_bytes(key))
        handle.flush()
        os.fsync(handle.fileno())
    return key


def load_key(path: Path) -> X25519PrivateKey:
    """The private key in ``path``; :class:`SealingError` naming the file if it is missing."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SealingError(f"no sealing key at {path}") from None
    except OSError as exc:
        raise SealingError(f"cannot read the sealing key {path}: {exc}") from exc
    return private_key_from_bytes(data, str(path))


def pack_error_details(message: str, traceback: str, payload: bytes | None) -> bytes:
    """The plaintext of a sealed error: message, traceback and the pickled exception (base64)
    as a JSON list, so a client can read the message and traceback of an endpoint it does not
    trust without unpickling anything (only the exception payload inside is a pickle)."""
    encoded = None if payload is None else base64.b64encode(payload).decode("ascii")
    return serialize([message, traceback, encoded], Strategy.JSON, limit=None)


def unpack_error_details(details: bytes, trusted: bool) -> tuple[str, str, bytes | None]:
    """``(message, traceback, payload)`` of an opened sealed error.  Details written by an
    older endpoint are a pickled tuple, loaded only when the endpoint is ``trusted`` (else the
    details are dropped: the error's class name still tells what happened)."""
    if payload_strategy(details) is not Strategy.JSON:
        if not trusted:
            return ("(the details were not loaded: the endpoint is not trusted)", "", None)
        message, traceback, payload = deserialize(details)
        return str(message), str(traceback), payload
    data = deserialize(details, data_only=True)
    if (
        not isinstance(data, list)
        or len(data) != 3
        or not all(isinstance(x, str) for x in data[:2])
        or not isinstance(data[2], (str, type(None)))
    ):
        raise SealingError("the sealed error details are not [message, traceback, payload]")
    try:
        payload = None if data[2] is None else base64.b64decode(data[2], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SealingError(f"the sealed error's exception payload is not base64: {exc}") from exc
    return data[0], data[1], payload
