"""Where the SDK finds the service URL and the API token.

Resolution order, per field: explicit arguments → ``OUTPOST_URL``/``OUTPOST_TOKEN`` → the
``credentials.json`` that ``outpost login`` writes under ``OUTPOST_HOME`` (default
``~/.outpost``).  The file's token is only used for the URL it was written for, so a token is
never sent to a service it was not issued by.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from outpost.errors import ConfigurationError
from outpost.protocol.conventions import outpost_home

ENV_HOME = "OUTPOST_HOME"
ENV_URL = "OUTPOST_URL"
ENV_TOKEN = "OUTPOST_TOKEN"
CREDENTIALS_FILE = "credentials.json"

_HOW_TO_FIX = (
    "run `outpost login --url URL --token TOKEN`, set OUTPOST_URL and OUTPOST_TOKEN, "
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
            f"cannot read credentials file {path}: {exc}; delete it and {_HOW_TO_FIX}"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"credentials file {path} must hold a JSON object; {_HOW_TO_FIX}")
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def write_credentials(url: str, token: str, path: Path | None = None) -> Path:
    """Write ``credentials.json`` readable by the owner only (0600), atomically."""
    path = path or credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": normalize_url(url), "token": token}, handle)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def resolve_credentials(url: str | None = None, token: str | None = None) -> Credentials:
    """Find the URL and token (see the module docstring for the order)."""
    url = url or os.environ.get(ENV_URL) or None
    token = token or os.environ.get(ENV_TOKEN) or None
    if url is None or token is None:
        stored = read_credentials_file()
        stored_url = stored.get("url")
        if url is None:
            url = stored_url
        if token is None and stored.get("token"):
            if stored_url and url and normalize_url(stored_url) != normalize_url(url):
                raise ConfigurationError(
                    f"no token for {url}: {credentials_path()} holds a token for {stored_url}; "
                    f"{_HOW_TO_FIX}"
                )
            token = stored["token"]
    if not url:
        raise ConfigurationError(f"no Outpost service URL configured; {_HOW_TO_FIX}")
    if not token:
        raise ConfigurationError(f"no Outpost API token configured for {url}; {_HOW_TO_FIX}")
    return Credentials(url=normalize_url(url), token=token)
