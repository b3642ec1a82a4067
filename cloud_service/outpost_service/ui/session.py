"""The dashboard's sign-in: a signed, expiring session cookie and a per-session CSRF token.

The cookie (``outpost_ui``, path ``/ui``) holds the sha256 of the API token the user signed in
with -- never the token -- and the CSRF token that every form posts back.  It is signed with a
key kept in the database (``meta``), so every API process of a deployment accepts it; it is
HttpOnly, SameSite=Strict, Secure when the request came over TLS, and expires after
:data:`LIFETIME`.  Each page view checks the token again as the API does (revoked or expired:
signed out), and the token's scopes still apply (retry and cancel need ``submit``).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from flask import current_app, g, request
from flask.wrappers import Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from outpost_service.auth import _valid_record  # the API's own token check
from outpost_service.errors import Forbidden, Unauthorized
from outpost_service.state import service_state
from outpost_service.store.secrets import load_or_create_secret
from outpost_service.store.users import TokenRecord, hash_token

COOKIE = "outpost_ui"
#: How long a sign-in lasts (seconds).
LIFETIME = 8 * 3600
#: The ``meta`` row with the key that signs session cookies.
KEY_NAME = "ui_session_key"
_EXTENSION = "outpost.ui.serializer"
#: Scripts and styles from /ui/static only (the SVG plots are markup, not styles).
_POLICY = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"


def _serializer() -> URLSafeTimedSerializer:
    app = current_app
    if _EXTENSION not in app.extensions:
        key = load_or_create_secret(
            service_state().database, KEY_NAME, lambda: secrets.token_hex(32)
        )
        app.extensions[_EXTENSION] = URLSafeTimedSerializer(key, salt="outpost-ui-session")
    serializer: URLSafeTimedSerializer = app.extensions[_EXTENSION]
    return serializer


def load() -> None:
    """``before_request`` of the dashboard: read the cookie into ``g.ui_session`` (a fresh
    session with a new CSRF token when there is none, or it is forged or expired) and refuse a
    POST whose ``csrf_token`` field is not this session's."""
    data: dict[str, Any] = {}
    raw = request.cookies.get(COOKIE)
    if raw:
        try:
            data = dict(_serializer().loads(raw, max_age=LIFETIME))
        except BadSignature:
            data = {}
    g.ui_fresh = "csrf" not in data
    if g.ui_fresh:
        data = {"csrf": secrets.token_urlsafe(24)}
    g.ui_session = data
    if request.method == "POST":
        sent = request.form.get("csrf_token", "")
        if g.ui_fresh or not hmac.compare_digest(sent, data["csrf"]):
            raise Forbidden(
                "this form was posted without the page's CSRF token (or from an old page); "
                "reload the page and submit it again",
                code="csrf_refused",
            )


def save(response: Response) -> Response:
    """``after_request`` of the dashboard: write the session cookie when it changed."""
    if getattr(g, "ui_fresh", False) or getattr(g, "ui_changed", False):
        data = g.ui_session
        if data is None:
            response.delete_cookie(COOKIE, path="/ui")
        else:
            response.set_cookie(
                COOKIE,
                _serializer().dumps(data),
                max_age=LIFETIME,
                path="/ui",
                httponly=True,
                secure=request.is_secure,
                samesite="Strict",
            )
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Content-Security-Policy", _POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def csrf_token() -> str:
    """This session's CSRF token, for the forms of the page being rendered."""
    token: str = g.ui_session["csrf"]
    return token


def sign_in(token: str) -> TokenRecord:
    """Check ``token`` as the API does and start a new session for it (a new CSRF token
    too); raises :class:`Unauthorized` with the API's reason."""
    digest = hash_token(token.strip())
    record = _valid_record(digest)
    g.ui_session = {"csrf": secrets.token_urlsafe(24), "token": digest}
    g.ui_changed = True
    return record


def sign_out() -> None:
    g.ui_session = None
    g.ui_changed = True


def require_user(scope: str = "read") -> TokenRecord:
    """The signed-in user's token record (and ``g.user`` set, as the API's views expect);
    :class:`Unauthorized` when not signed in or the token no longer works, :class:`Forbidden`
    when the token lacks ``scope``."""
    digest = g.ui_session.get("token") if g.ui_session else None
    if not digest:
        raise Unauthorized("sign in with your API token", code="not_signed_in")
    record = _valid_record(digest)
    if record.scopes is not None and scope not in record.scopes:
        raise Forbidden(
            f"your token has scope(s) {', '.join(sorted(record.scopes))}; this needs {scope!r}",
            code="insufficient_scope",
        )
    g.user = record.user
    g.token_hash = digest
    return record
