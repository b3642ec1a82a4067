"""The SQL schema (SQLAlchemy Core) and its version.

Times are float seconds since the epoch, like the protocol's envelopes, so both backends store
and compare them the same way.  ``SCHEMA_VERSION`` is bumped on every incompatible change; the
store refuses to run on a database written by another version (see :mod:`.database`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

#: 2: ``tasks.published`` (RabbitMQ confirmed the task message; the sweeper republishes the
#: rest), ``tasks.request_id`` (the client's id of the submit request, for idempotent
#: retries) and ``tasks.deadline`` (when an unfinished task expires; see expiry.py).  A
#: version-1 database is upgraded in place (see :func:`.database.migrate_from_1`).
#: 3: ``tasks.retried_by`` (the task that retried this one, ``outpost tasks retry``); a
#: version-2 database is upgraded in place (see :func:`.database.migrate_from_2`).
#: 4: endpoint sharing -- ``endpoints.allowed_functions`` (None: any function) and the
#: ``endpoint_access`` table (users besides the owner who may submit) -- and token scopes
#: (``tokens.scopes``, None: every scope); a version-3 database is upgraded in place (see
#: :func:`.database.migrate_from_3`).
#: 5: the index ``ix_tasks_state_deadline`` (state, deadline) replaces ``ix_tasks_deadline``, so
#: the expiry sweep reads only unfinished tasks' deadlines, not the past deadlines of every
#: finished task kept for retention (``benchmarks/store_scale.py``); a version-4 database is
#: upgraded in place (see :func:`.database.migrate_from_4`).
#: 6: the ``task_group_counts`` table -- per owner, task group and SDK client (executor), how
#: many tasks the client accepted for the group, so a group summary shows tasks that never
#: reached the service ("submitted 300, stored 77"); a version-5 database is upgraded in place
#: (see :func:`.database.migrate_from_5`).
#: 7: the ``task_dependencies`` table -- which tasks a task waits for (state ``waiting`` until
#: they all succeeded, see :mod:`outpost_service.dependencies`); a version-6 database is
#: upgraded in place (see :func:`.database.migrate_from_6`).
SCHEMA_VERSION = 7

#: An autoincrementing 64-bit key that SQLite also autoincrements (it only does for INTEGER).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()


def _id(name: str, *args: Any, **kwargs: Any) -> sa.Column[Any]:
    """A UUID as text: task, endpoint and task group ids."""
    return sa.Column(name, sa.String(36), *args, **kwargs)


def _user(name: str, **kwargs: Any) -> sa.Column[Any]:
    """A reference to a user."""
    return sa.Column(name, BigId, sa.ForeignKey("users.user_id"), **kwargs)


def _time(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    """A moment, in float seconds since the epoch."""
    return sa.Column(name, sa.Float, nullable=nullable)


users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    _time("created_at"),
)

tokens = sa.Table(
    "tokens",
    metadata,
    # Only the sha256 hex of a token is stored: a leaked database does not leak tokens.
    sa.Column("token_hash", sa.String(64), primary_key=True),
    _user("user_id", nullable=False, index=True),
    _time("created_at"),
    _time("expires_at", nullable=True),
    _time("revoked_at", nullable=True),
    # Comma-separated scopes the token may use (read, submit, manage); NULL: all of them.
    sa.Column("scopes", sa.String(64), nullable=True),
)

endpoints = sa.Table(
    "endpoints",
    metadata,
    _id("endpoint_id", primary_key=True),
    _user("owner", nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False),
    _time("created_at"),
    _time("last_heartbeat", nullable=True),
    # What the endpoint said about itself in its last heartbeat ("online", "offline", ...).
    sa.Column("reported_state", sa.String(32), nullable=True),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    # The function ids anyone (the owner too) may run here; NULL: any function (docs/SECURITY.md).
    sa.Column("allowed_functions", sa.JSON, nullable=True),
    sa.Index("ix_endpoints_owner_name", "owner", "name"),
)

#: The users besides its owner who may see an endpoint and submit to it.
endpoint_access = sa.Table(
    "endpoint_access",
    metadata,
    _id("endpoint_id", sa.ForeignKey("endpoints.endpoint_id"), primary_key=True),
    _user("user_id", primary_key=True, index=True),
    _time("granted_at"),
)

functions = sa.Table(
    "functions",
    metadata,
    sa.Column("function_id", sa.String(64), primary_key=True),  # sha256 hex of the payload
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("name", sa.String(64), nullable=True),
    _user("created_by", nullable=False),
    _time("created_at"),
)

tasks = sa.Table(
    "tasks",
    metadata,
    # ``seq`` keeps the submission order (a batch shares one created_at).
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    _id("task_id", nullable=False, unique=True),
    _user("owner", nullable=False),
    _id("endpoint_id", sa.ForeignKey("endpoints.endpoint_id"), nullable=False),
    sa.Column("function_id", sa.String(64), sa.ForeignKey("functions.function_id"), nullable=False),
    _id("task_group_id", nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("args", sa.LargeBinary, nullable=False),
    sa.Column("resource_spec", sa.JSON, nullable=False),
    sa.Column("result", sa.LargeBinary, nullable=True),  # the ResultEnvelope's JSON bytes
    _time("created_at"),
    _time("completed_at", nullable=True),
    # Set when the task finishes; a sweep deletes the task once it is passed.
    _time("expires_at", nullable=True),
    # False from the insert until RabbitMQ confirmed the task message (see jobs/sweep.py).
    sa.Column("published", sa.Boolean, nullable=False, server_default=sa.true()),
    # The client's id for the POST /v1/tasks request that created the task (or None).
    sa.Column("request_id", sa.String(64), nullable=True),
    # When the task fails as ``expired`` if it has not finished (None: never).
    _time("deadline", nullable=True),
    # The id of the new task that retried this one (POST /v1/task_groups/<gid>/retry), or None.
    _id("retried_by", nullable=True),
    sa.Index("ix_tasks_task_group_id", "task_group_id"),
    sa.Index("ix_tasks_published", "published"),
    sa.Index("ix_tasks_owner_request", "owner", "request_id"),
    sa.Index("ix_tasks_state_deadline", "state", "deadline"),
    sa.Index("ix_tasks_endpoint_state", "endpoint_id", "state"),
    sa.Index("ix_tasks_expires_at", "expires_at"),
)

#: How many tasks each SDK client (one ``Executor``, ``client_id``) accepted for a task group,
#: as it declared with its submit requests (``group_submitted``); only ever grows.
task_group_counts = sa.Table(
    "task_group_counts",
    metadata,
    _user("owner", primary_key=True, autoincrement=False),
    _id("task_group_id", primary_key=True),
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("submitted", sa.BigInteger, nullable=False),
    _time("updated_at"),
)

#: The parents each task depends on (``TaskRequest.depends_on``); kept with the child, deleted
#: with it.  Read by child (to build its message) and by parent (to release or fail children).
task_dependencies = sa.Table(
    "task_dependencies",
    metadata,
    _id("child_task_id", primary_key=True),
    _id("parent_task_id", primary_key=True),
    sa.Index("ix_task_dependencies_parent", "parent_task_id"),
)

task_events = sa.Table(
    "task_events",
    metadata,
    sa.Column("event_id", BigId, primary_key=True, autoincrement=True),
    _id("task_id", nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False),
    _time("at"),
)

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)
