"""Where the SDK finds the service URL and the API token.

Resolution order, per field: explicit arguments → ``OUTPOST_URL``/``OUTPOST_TOKEN`` → the
``credentials.json`` that ``outpost login`` writes under ``OUTPOST_HOME`` (default
``~/.outpost``).  The file's token is only used for the URL it was written for, so a token is
never sent to a service it was not issued by.

This is the one resolver of Outpost: the endpoint (``outpost_endpoint.service_link``) calls
:func:`resolve_credentials` too, with its own ``credentials.json`` as ``token_file``, so a token
stored for one URL cannot reach another because the endpoint's config.yaml names it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from outpost.errors import ConfigurationError
from outpost.protocol.conventions import outpost_home
from outpost.runtime.files import write_json_private

ENV_HOME = "OUTPOST_HOME"
ENV_URL = "OUTPOST_URL"
ENV_TOKEN = "OUTPOST_TOKEN"
CREDENTIALS_FILE = "credentials.json"

#: Ends the resolver's errors; ``{url}`` becomes the service URL when it is known.
_HOW_TO_FIX = (
    "run `outpost login --url {url} --token TOKEN`, set OUTPOST_URL and OUTPOST_TOKEN, "
    "or pass url= and token= to Client()"
)


@dataclass(frozen=True)
class Credentials:
    """A service URL and the token to present to it."""

    url: str
    token: str

    def __repr__(self) -> str:  # never print the token in logs or tracebacks
        return f"Credentials(url={self.url!r}, token='***')"


def credentials_path() -> Path:
    return outpost_home() / CREDENTIALS_FILE


def normalize_url(url: str) -> str:
    """Strip trailing slashes and a trailing ``/v1`` so both spellings of the URL work."""
    url = url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"service URL {url!r} must start with http:// or https://, e.g. https://outpost.example.org"
        )
    return url


def read_credentials_file(path: Path | None = None) -> dict[str, str]:
    """The contents of ``credentials.json`` (empty when the file does not exist)."""
    path = path or credentials_path()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot read credentials file {path}: {exc}; delete it and {_fix(_HOW_TO_FIX)}"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"credentials file {path} must hold a JSON object; {_fix(_HOW_TO_FIX)}"
        )
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def write_credentials(url: str, token: str, path: Path | None = None) -> Path:
    """Write ``credentials.json`` readable by the owner only (0600), atomically."""
    stored = {"url": normalize_url(url), "token": token}
    return write_json_private(path or credentials_path(), stored, indent=None)


def stored_token(stored: Mapping[str, str], url: str | None, path: Path) -> str | None:
    """The token of a credentials file's contents ``stored`` if it may be sent to ``url``.

    A file that names the URL its token was issued for (``outpost login`` and
    ``outpost-endpoint configure`` write one) lends it to that URL only: for any other URL
    this raises, naming both, rather than handing a token to a service that did not issue it.
    A file without a URL (written by an older ``outpost-endpoint configure``) lends its token
    to the URL configured beside it."""
    token = stored.get("token")
    if not token:
        return None
    stored_url = stored.get("url")
    if stored_url and url and normalize_url(stored_url) != normalize_url(url):
        raise ConfigurationError(
            f"no token for {normalize_url(url)}: {path} holds a token for "
            f"{normalize_url(stored_url)}, which is never sent to another service"
        )
    return token


def resolve_credentials(
    url: str | None = None,
    token: str | None = None,
    *,
    token_file: Path | None = None,
    how_to_fix: str = _HOW_TO_FIX,
) -> Credentials:
    """Find the URL and token (see the module docstring for the order).

    ``token_file`` is a further credentials file (an endpoint's own ``credentials.json``)
    consulted after ``token`` and before ``OUTPOST_TOKEN``; its token too goes only to the URL
    it names.  A file's token stored for another URL is passed over; when no other token is
    found the error says which file holds a token for which URL.  ``how_to_fix`` ends every
    error message (the endpoint's tells an operator what to edit); a ``{url}`` in it becomes
    the service URL, so the fix can be copied as it is."""
    url = url or os.environ.get(ENV_URL) or None
    user_file = read_credentials_file() if url is None or token is None else {}
    url = url or user_file.get("url") or None
    refusals: list[str] = []
    files = []
    if token_file is not None and token is None:
        files.append((token_file, read_credentials_file(token_file)))
    sources: list[tuple[Path, dict[str, str]] | str | None] = [
        token,
        *files,
        os.environ.get(ENV_TOKEN),
        (credentials_path(), user_file),
    ]
    token = None
    for source in sources:
        if source is None or isinstance(source, str):
            token = source or None
        else:
            try:
                token = stored_token(source[1], url, source[0])
            except ConfigurationError as exc:
                refusals.append(str(exc))
        if token:
            break
    if not url:
        raise ConfigurationError(f"no Outpost service URL configured; {_fix(how_to_fix)}")
    if not token:
        reason = "; ".join(refusals) or f"no Outpost API token configured for {url}"
        raise ConfigurationError(f"{reason}; {_fix(how_to_fix, url)}")
    return Credentials(url=normalize_url(url), token=token)


def _fix(how_to_fix: str, url: str | None = None) -> str:
    """``how_to_fix`` naming ``url`` (or the placeholder ``URL`` while none is known)."""
    return how_to_fix.replace("{url}", url.strip().rstrip("/") if url else "URL")
