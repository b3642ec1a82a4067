"""Users and their API tokens.

A token is ``op_`` + ``secrets.token_urlsafe(32)``; only its sha256 hex is stored and tokens are
looked up by that hash, so the plaintext exists only in the answer to ``create-user``.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from outpost_service.store.schema import tokens, users

TOKEN_PREFIX = "op_"

#: What a token may do (docs/SECURITY.md): ``read`` (every GET, and collecting results),
#: ``submit`` (functions, tasks, cancels, retries), ``manage`` (register, share, delete
#: endpoints).  A token issued without scopes has all three.
SCOPES = ("read", "submit", "manage")


@dataclass(frozen=True)
class User:
    user_id: int
    name: str


@dataclass(frozen=True)
class TokenRecord:
    token_hash: str
    user: User
    expires_at: float | None
    revoked_at: float | None
    #: None: every scope
    scopes: frozenset[str] | None = None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def get_or_create_user(conn: Connection, name: str) -> User:
    """The user called ``name``, created if absent."""
    row = conn.execute(sa.select(users).where(users.c.name == name)).first()
    if row is not None:
        return User(row.user_id, row.name)
    result = conn.execute(users.insert().values(name=name, created_at=time.time()))
    key = result.inserted_primary_key
    assert key is not None
    return User(int(key[0]), name)


def find_user(conn: Connection, name: str) -> User | None:
    """The user called ``name``, or None."""
    row = conn.execute(sa.select(users).where(users.c.name == name)).first()
    return None if row is None else User(row.user_id, row.name)


def revoke_user_tokens(conn: Connection, user: User) -> int:
    """Revoke every active token of ``user``; how many were active."""
    result = conn.execute(
        tokens.update()
        .where(tokens.c.user_id == user.user_id, tokens.c.revoked_at.is_(None))
        .values(revoked_at=time.time())
    )
    return int(result.rowcount)


def check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """``scopes`` as a set, or ValueError naming an unknown one and the known ones."""
    given = frozenset(s.strip() for s in scopes if s.strip())
    unknown = sorted(given - set(SCOPES))
    if unknown or not given:
        raise ValueError(
            f"unknown scope(s) {', '.join(unknown) or '(none given)'}; use one or more of "
            f"{', '.join(SCOPES)}"
        )
    return given


def issue_token(
    conn: Connection,
    user: User,
    *,
    expires_in: float | None = None,
    scopes: Iterable[str] | None = None,
) -> str:
    """A new token for ``user`` (limited to ``scopes`` if given); the plaintext is returned once
    and never stored."""
    allowed = None if scopes is None else ",".join(sorted(check_scopes(scopes)))
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = time.time()
    conn.execute(
        tokens.insert().values(
            token_hash=hash_token(token),
            user_id=user.user_id,
            created_at=now,
            expires_at=None if expires_in is None else now + expires_in,
            scopes=allowed,
        )
    )
    return token


def find_token(conn: Connection, token_hash: str) -> TokenRecord | None:
    row = conn.execute(
        sa.select(tokens, users.c.name)
        .join(users, users.c.user_id == tokens.c.user_id)
        .where(tokens.c.token_hash == token_hash)
    ).first()
    if row is None:
        return None
    return TokenRecord(
        token_hash=row.token_hash,
        user=User(row.user_id, row.name),
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        scopes=None if row.scopes is None else frozenset(row.scopes.split(",")),
    )


def revoke_token(conn: Connection, token: str) -> bool:
    """Revoke ``token``; False if it was unknown or already revoked."""
    result = conn.execute(
        tokens.update()
        .where(tokens.c.token_hash == hash_token(token), tokens.c.revoked_at.is_(None))
        .values(revoked_at=time.time())
    )
    return bool(result.rowcount)
