"""Results say whether the caller owns the endpoint that produced them; pickles from endpoints
the caller does not own are withheld unless the caller trusts that endpoint.

Loading a pickle runs code, and a result's pickle is written by whatever ran on the endpoint:
the owner of a shared endpoint could hand its users a pickle that runs code on their laptops.
So every result the service returns carries the service's (authoritative) answer:

* the caller owns the endpoint: ``"endpoint_owned": true`` is appended to the stored JSON (no
  parse on this, the hot, path);
* otherwise ``"endpoint_owned": false`` and ``"endpoint_owner": name``, and -- unless the request
  named the endpoint in ``trust_endpoints`` -- a value or an exception payload that is not
  plain JSON data (by its code byte: a pickle or source text) is replaced by ``null`` and
  listed in ``"withheld"``.  An SDK that predates this check then has nothing to unpickle;
  a current SDK raises ``UntrustedResultError`` and says how to opt in.

End-to-end sealed payloads cannot be inspected here and pass through: the SDK applies the same
rule after opening them.  The stored result is never changed; nothing is unpickled here.
The endpoint cannot forge these fields: ingest stores only the envelope's own fields
(``ResultEnvelope.to_bytes()``), and the service's fields are written last (JSON readers keep
the last of duplicate keys).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from outpost.protocol import Strategy, payload_strategy
from outpost.protocol.sealing import is_sealed

OWNED_SUFFIX = b',"endpoint_owned":true}'


def mark_result(stored: bytes, owned: bool, owner_name: str, trusted: bool) -> bytes:
    """The JSON of one stored result as returned to a caller (see the module docstring)."""
    if owned and stored.endswith(b"}"):
        return stored[:-1] + OWNED_SUFFIX
    marked = mark_result_dict(json.loads(stored), owned, owner_name, trusted)
    return json.dumps(marked, separators=(",", ":")).encode()


def mark_result_dict(
    data: dict[str, Any], owned: bool, owner_name: str, trusted: bool
) -> dict[str, Any]:
    """:func:`mark_result` for a result already parsed (``GET /v1/tasks/<id>``); changes
    ``data`` in place and returns it."""
    withheld = [] if owned or trusted else _withhold(data)
    data["endpoint_owned"] = owned
    if not owned:
        data["endpoint_owner"] = owner_name
    if withheld:
        data["withheld"] = withheld
    return data


def _withhold(data: dict[str, Any]) -> list[str]:
    """Replace the pickled parts of ``data`` by None; returns what was replaced."""
    withheld = []
    if not _is_data(data.get("value")):
        data["value"] = None
        withheld.append("value")
    error = data.get("error")
    if isinstance(error, dict) and not _is_data(error.get("payload")):
        error["payload"] = None
        withheld.append("error.payload")
    return withheld


def _is_data(text: Any) -> bool:
    """True for an absent payload, a JSON payload, or a sealed one (judged by the SDK)."""
    if text is None:
        return True
    if not isinstance(text, str):
        return False
    try:
        # Only the first bytes are needed: outpost's magic and strategy code, or the seal's.
        head = base64.b64decode(text[:16].encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return False
    return payload_strategy(head) is Strategy.JSON or is_sealed(head)
