"""Conventions every Outpost process follows: where its state lives and how it names
 a secret-bearing URL in a message.

They live beside the messages because the SDK, the service and the endpoint must agree on them
(``OUTPOST_HOME`` is documented for users of all three) and the import rules let each of them
use ``outpost.protocol`` but not one another.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def outpost_home() -> Path:
    """``$OUTPOST_HOME`` or ``~/.outpost``, absolute (daemons change directory)."""
    configured = os.environ.get("OUTPOST_HOME")
    home = Path(configured).expanduser() if configured else Path.home() / ".outpost"
    return home.absolute()


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


#: How every Outpost CLI takes a secret (token, URL with a password) without putting it on the
#: command line, where any user of the machine sees it in ``ps``: from its environment
#: variable, or as ``@PATH``, the contents of file PATH (surrounding whitespace stripped).
SECRET_FILE_PREFIX = "@"


def read_secret(value: str | None, option: str) -> str | None:
    """``value`` itself, or, when it is ``@PATH``, the secret stored in file PATH (``~``
    allowed); ValueError naming ``option`` and the file when it cannot be read or is empty."""
    if value is None or not value.startswith(SECRET_FILE_PREFIX):
        return value
    path = Path(value[len(SECRET_FILE_PREFIX) :]).expanduser()
    try:
        secret = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(
            f"{option} {value}: cannot read {path} ({reason}); give @PATH of a readable file "
            "that holds only the secret"
        ) from None
    if not secret:
        raise ValueError(f"{option} {value}: {path} is empty; put the secret in it")
    return secret


def exposed_secret(
    value: str | None, option: str, env: str | None, *, url: bool = False
) -> str | None:
    """A warning when ``value``, given literally on the command line, shows a secret in ``ps``
    (a token; for ``url``, only one with a password), else None."""
    if not value or value.startswith(SECRET_FILE_PREFIX):
        return None
    if url and not urlsplit(value).password:
        return None
    instead = f"set {env} or pass {option} @FILE" if env else f"pass {option} as @FILE"
    return (
        f"warning: {option} on the command line is visible to every user of this machine "
        f"(ps, /proc); {instead} instead"
    )
