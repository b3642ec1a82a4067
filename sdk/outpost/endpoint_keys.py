"""Pinned endpoint sealing keys: trust on first use for ``Executor(encrypt=True)``.

Sealed arguments are only as private as the endpoint key they are sealed for, and that key
comes from the service (``GET /v1/endpoints/<id>`` → ``metadata.sealing_public_key``).  A
malicious service could hand out its own key instead and read every argument.  So the first
key seen for an endpoint is remembered -- its fingerprint, in ``$OUTPOST_HOME/known_endpoints``,
one ``<endpoint_id> sha256:<hex>`` line per endpoint, like ssh's ``known_hosts`` -- and any
other key offered later is refused with :class:`~outpost.errors.EndpointKeyChangedError`
naming both fingerprints.  A key that was legitimately rotated (the endpoint's
``sealing_key`` file replaced) is accepted again with ``outpost endpoints trust ID`` or by
deleting the endpoint's line.  ``Executor(endpoint_key=...)`` pins a key (or fingerprint)
explicitly; the file is then neither read nor written for that endpoint.

This protects from a service that turns malicious *after* the first use, not one that
already lies the first time: compare the fingerprint with the one the endpoint logs at start
(``sealing key fingerprint sha256:...`` in its ``endpoint.log``) to close that gap.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

from outpost.errors import ConfigurationError, EndpointKeyChangedError
from outpost.protocol.conventions import outpost_home
from outpost.protocol.sealing import key_fingerprint, public_key_from_text
from outpost.runtime.files import write_private

log = logging.getLogger(__name__)

KNOWN_ENDPOINTS_FILE = "known_endpoints"
_FINGERPRINT = re.compile(r"sha256:[0-9a-f]{64}")
_LOCK = threading.Lock()  # one read-modify-write of the file at a time in this process


def known_endpoints_path() -> Path:
    return outpost_home() / KNOWN_ENDPOINTS_FILE


def fingerprint_of(key: str) -> str:
    """The fingerprint of ``key``: a base64 public key, or already a ``sha256:<hex>``
    fingerprint (returned as is)."""
    if _FINGERPRINT.fullmatch(key.strip().lower()):
        return key.strip().lower()
    return key_fingerprint(public_key_from_text(key, "the endpoint key"))


def read_pins(path: Path | None = None) -> dict[str, str]:
    """``{endpoint_id: fingerprint}`` from the file (empty if it does not exist)."""
    path = path or known_endpoints_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigurationError(f"cannot read pinned endpoint keys {path}: {exc}") from exc
    pins: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 2 or not _FINGERPRINT.fullmatch(fields[1]):
            raise ConfigurationError(
                f"{path} line {number} is not '<endpoint_id> sha256:<64 hex digits>': "
                f"{line!r}; fix or delete that line"
            )
        pins[fields[0]] = fields[1]
    return pins


def write_pin(endpoint_id: str, fingerprint: str, path: Path | None = None) -> Path:
    """Pin ``fingerprint`` for ``endpoint_id`` (replacing any earlier pin), atomically."""
    path = path or known_endpoints_path()
    with _LOCK:
        pins = read_pins(path)
        pins[endpoint_id] = fingerprint
        body = "# endpoint_id sealing-key fingerprint (outpost.endpoint_keys; trust on first use)\n"
        body += "".join(f"{eid} {fp}\n" for eid, fp in sorted(pins.items()))
        return write_private(path, body)


def check_endpoint_key(endpoint_id: str, offered: str, pinned: str | None = None) -> None:
    """Accept ``offered`` (the base64 key the service returned) for ``endpoint_id``, or raise
    :class:`EndpointKeyChangedError`.

    With ``pinned`` (an explicit key or fingerprint) the offered key must match it.  Without,
    the file decides: the first key seen is pinned, later ones must match it."""
    offered_fp = fingerprint_of(offered)
    if pinned is not None:
        expected = fingerprint_of(pinned)
        if offered_fp != expected:
            raise EndpointKeyChangedError(
                f"the service offered sealing key {offered_fp} for endpoint {endpoint_id}, but "
                f"Executor(endpoint_key=...) pins {expected}; nothing was sealed. If the "
                "endpoint's key was rotated, ask its owner for the new fingerprint (logged at "
                "`outpost-endpoint start`) and pin that one"
            )
        return
    path = known_endpoints_path()
    known = read_pins(path).get(endpoint_id)
    if known is None:
        write_pin(endpoint_id, offered_fp, path)
        log.info("pinned sealing key %s of endpoint %s in %s", offered_fp, endpoint_id, path)
        return
    if known != offered_fp:
        raise EndpointKeyChangedError(
            f"the service offered sealing key {offered_fp} for endpoint {endpoint_id}, but "
            f"{path} pins {known} for it; nothing was sealed. A service handing out another "
            "key could read your arguments. If the endpoint's key was legitimately replaced, "
            "compare the new fingerprint with the one its owner sees (logged at "
            f"`outpost-endpoint start`) and accept it with `outpost endpoints trust "
            f"{endpoint_id}` (or delete its line from {path}), or pass "
            f"Executor(endpoint_key='{offered_fp}')"
        )
