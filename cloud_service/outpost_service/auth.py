"""Bearer-token authentication.

Tokens are looked up by their sha256 hash (the only form stored) and the final comparison uses
:func:`hmac.compare_digest`.  Every failure is a 401 that says how to get a working token.
"""

from __future__ import annotations

import hmac
import time

from flask import current_app, g, request

from outpost_service.errors import Forbidden, TooManyRequests, Unauthorized
from outpost_service.routing import declaration_of
from outpost_service.state import service_state
from outpost_service.store.users import TokenRecord, User, find_token, hash_token

HOW_TO_GET_A_TOKEN = (
    "ask the service operator for a token (`outpost-service create-user NAME` prints one) and "
    "send it as 'Authorization: Bearer <token>'"
)


def authenticate() -> None:
    """``before_request`` hook of the app: for a route whose declaration names a scope, set
    ``g.user`` or raise :class:`Unauthorized` (or :class:`Forbidden` for a token without that
    scope).  Public routes, and requests that match no route (answered 404/405), pass."""
    if request.endpoint is None:
        return
    declaration = declaration_of(current_app.view_functions[request.endpoint])
    assert declaration is not None  # create_app refuses undeclared routes
    if declaration.scope in ("public", "ui"):  # ui: the dashboard's session (ui/session.py)
        return
    # OPTIONS asks what a path allows: reading, whichever of the path's routes it matched.
    needed = "read" if request.method == "OPTIONS" else declaration.scope
    header = request.headers.get("Authorization", "")
    if not header:
        raise Unauthorized(f"missing Authorization header; {HOW_TO_GET_A_TOKEN}")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(
            f"Authorization header must be 'Bearer <token>', got scheme {scheme[:20]!r}; "
            f"{HOW_TO_GET_A_TOKEN}"
        )
    digest = hash_token(token)
    record = _valid_record(digest)
    if record.scopes is not None and needed not in record.scopes:
        raise Forbidden(
            f"this token has scope(s) {', '.join(sorted(record.scopes))}; {request.method} "
            f"{request.path} needs scope {needed!r}; ask the operator for a token with it "
            f"(`outpost-service create-user NAME --scope {needed},...`)",
            code="insufficient_scope",
            details={"required_scope": needed, "token_scopes": sorted(record.scopes)},
        )
    limiter = service_state().limiter
    if limiter is not None:
        wait = limiter.take(digest)
        if wait > 0:
            raise TooManyRequests(
                f"this token is over its limit of {limiter.rate:g} requests per second "
                f"(bursts of {limiter.burst:g}); retry after the Retry-After seconds, and "
                "batch work (one POST /v1/tasks takes many tasks)",
                retry_after=wait,
            )
    g.user = record.user
    g.token_hash = digest


def recheck_token() -> None:
    """Raise :class:`Unauthorized` if this request's token was revoked (or expired) since
    :func:`authenticate` let the request in: a long-poll calls this after waiting, so a
    token revoked meanwhile gets no results."""
    _valid_record(g.token_hash)


def _valid_record(digest: str) -> TokenRecord:
    """The stored token with hash ``digest``, if it is usable; else :class:`Unauthorized`."""
    with service_state().database.read() as conn:
        record = find_token(conn, digest)
    if record is None or not hmac.compare_digest(record.token_hash, digest):
        raise Unauthorized(f"unknown token; {HOW_TO_GET_A_TOKEN}", code="invalid_token")
    if record.revoked_at is not None:
        raise Unauthorized(f"this token was revoked; {HOW_TO_GET_A_TOKEN}", code="token_revoked")
    if record.expires_at is not None and record.expires_at <= time.time():
        raise Unauthorized(f"this token has expired; {HOW_TO_GET_A_TOKEN}", code="token_expired")
    return record


def current_user() -> User:
    """The authenticated user of this request (set by :func:`authenticate`)."""
    user: User = g.user
    return user
