"""``/v1/endpoints``: register (or re-attach), list, show and delete endpoints.

Registration declares the endpoint's task queue *before* writing the row, so a broker failure
(503) leaves nothing behind; re-registering is idempotent and re-declares the queue.  Each
registration also gives the endpoint's own RabbitMQ user a new password (broker/admin.py), handed
out once in ``amqp.url``; deleting the endpoint deletes that user (docs/SECURITY.md).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from flask import Blueprint
from sqlalchemy.engine import Row

from outpost.protocol.api import Endpoint as EndpointAnswer
from outpost.protocol.api import EndpointDeleted, EndpointPolicy, Endpoints, Registration
from outpost_service.api.bodies import RegisterEndpoint, SetPolicy
from outpost_service.auth import current_user
from outpost_service.broker.admin import with_credentials
from outpost_service.cancellation import cancel_tasks
from outpost_service.errors import BrokerError, BrokerUnavailable, Conflict, NotFound
from outpost_service.routing import declare
from outpost_service.state import ServiceState, service_state
from outpost_service.store import access as access_store
from outpost_service.store import endpoints as endpoint_store
from outpost_service.store import functions as function_store
from outpost_service.store import tasks as task_store
from outpost_service.validation import invalid

bp = Blueprint("endpoints", __name__, url_prefix="/v1/endpoints")

#: Heartbeats an endpoint may miss before it is shown offline.
MISSED_HEARTBEATS = 3


@bp.post("")
@declare(scope="manage", body=RegisterEndpoint, answers=Registration, errors=(409, 503))
def register_endpoint(body: RegisterEndpoint) -> dict[str, Any]:
    """Register an endpoint, or re-attach one (same name or known endpoint_id)."""
    state = service_state()
    user = current_user()
    name, endpoint_id, metadata = body.name, body.endpoint_id, body.metadata
    with state.database.read() as conn:
        by_name = endpoint_store.find_by_name(conn, user.user_id, name)
        existing = endpoint_store.get(conn, endpoint_id) if endpoint_id else None
    if existing is not None and existing.owner != user.user_id:
        raise Conflict(
            f"endpoint_id {endpoint_id} cannot be used; leave it out to get a new id",
            details={"endpoint_id": endpoint_id},
        )
    if endpoint_id is None:
        existing = by_name
        endpoint_id = by_name.endpoint_id if by_name is not None else str(uuid.uuid4())
    elif by_name is not None and by_name.endpoint_id != endpoint_id:
        raise Conflict(
            f"you already have an endpoint named {name!r} ({by_name.endpoint_id}); choose "
            "another name or register with that endpoint_id",
            details={"name": name, "endpoint_id": by_name.endpoint_id},
        )
    if existing is not None and not body.force:
        _refuse_if_connected(state, existing)

    # The grant first: it cuts off a previous instance, whose unacked tasks then go back to
    # its queue before the declaration moves a legacy queue's tasks (broker/topology.py).
    broker_urls = _endpoint_broker_urls(state, endpoint_id)
    _broker(lambda: state.publisher.declare_endpoint_queue(endpoint_id))
    try:
        with state.database.write() as conn:
            if existing is None:
                endpoint_store.insert(conn, endpoint_id, user.user_id, name, metadata or {})
            else:
                endpoint_store.reattach(conn, endpoint_id, name, metadata)
    except sa.exc.IntegrityError:
        raise Conflict(
            f"endpoint {endpoint_id} was registered concurrently; retry the request"
        ) from None
    topology = state.topology
    signer = state.publisher.signer
    return {
        "endpoint_id": endpoint_id,
        "name": name,
        "amqp": {
            "url": broker_urls[0],
            "urls": broker_urls,
            "task_exchange": topology.task_exchange,
            "task_queue": topology.task_queue(endpoint_id),
            "result_exchange": topology.result_exchange,
            "result_routing_key": topology.result_routing_key(endpoint_id),
            "status_routing_key": topology.status_routing_key(endpoint_id),
            "heartbeat_interval": state.config.heartbeat_interval,
            # the endpoint pins this key and accepts only tasks it signed (docs/SECURITY.md)
            "task_signing_key": signer.public_key if signer is not None else None,
            "task_max_age": state.config.task_max_age,
        },
    }


@bp.get("")
@declare(scope="read", answers=Endpoints)
def list_endpoints() -> dict[str, Any]:
    """List your endpoints, then those shared with you (``"shared": true``)."""
    state = service_state()
    with state.database.read() as conn:
        rows = access_store.list_usable(conn, current_user().user_id)
        counts = endpoint_store.outstanding_counts(conn, [r.endpoint_id for r in rows])
    return {"endpoints": [_describe(state, row, counts.get(row.endpoint_id, 0)) for row in rows]}


@bp.get("/<endpoint_id>")
@declare(scope="read", answers=EndpointAnswer)
def get_endpoint(endpoint_id: str) -> dict[str, Any]:
    """Show one endpoint (yours, or shared with you)."""
    state = service_state()
    with state.database.read() as conn:
        row = access_store.get_usable(conn, endpoint_id, current_user().user_id)
        if row is None:
            raise NotFound(
                f"no endpoint {endpoint_id} among yours or those shared with you",
                details={"endpoint_id": endpoint_id},
            )
        counts = endpoint_store.outstanding_counts(conn, [row.endpoint_id])
    return _describe(state, row, counts.get(row.endpoint_id, 0))


@bp.get("/<endpoint_id>/policy")
@declare(scope="read", answers=EndpointPolicy)
def get_policy(endpoint_id: str) -> dict[str, Any]:
    """Who besides the owner may use the endpoint, and which functions may run (owner only)."""
    with service_state().database.read() as conn:
        row = _owned(conn, endpoint_id)
        return _policy(conn, row.endpoint_id)


@bp.put("/<endpoint_id>/policy")
@declare(scope="manage", body=SetPolicy, answers=EndpointPolicy)
def set_policy(endpoint_id: str, body: SetPolicy) -> dict[str, Any]:
    """Share your endpoint with users and/or restrict it to listed function ids (null: any
    function); replaces the whole policy.

    Owner only: others get 404, as for any endpoint that is not theirs.  Every field is
    checked before anything is written.
    """
    state = service_state()
    owner = current_user()
    names = sorted(set(body.allowed_users))
    given = body.allowed_functions
    functions = None if given is None else sorted(set(given))
    with state.database.write() as conn:
        row = _owned(conn, endpoint_id)
        ids = access_store.user_ids(conn, names)
        missing = [n for n in names if n not in ids]
        if missing:
            raise invalid(
                "allowed_users",
                f"names unknown user(s) {', '.join(missing)}; the service operator creates "
                "users with `outpost-service create-user NAME`",
            )
        if functions:
            unregistered = sorted(set(functions) - function_store.payloads(conn, functions).keys())
            if unregistered:
                raise invalid(
                    "allowed_functions",
                    f"names unregistered function id(s) {', '.join(unregistered)}; register "
                    "them first (POST /v1/functions, Client.register_function)",
                )
        shared_with = [uid for name, uid in ids.items() if uid != owner.user_id]
        access_store.set_policy(conn, row.endpoint_id, shared_with, functions)
        return _policy(conn, row.endpoint_id)


def _policy(conn: sa.Connection, endpoint_id: str) -> dict[str, Any]:
    users, functions = access_store.policy(conn, endpoint_id)
    return {"endpoint_id": endpoint_id, "allowed_users": users, "allowed_functions": functions}


@bp.delete("/<endpoint_id>")
@declare(scope="manage", answers=EndpointDeleted, errors=(503,))
def delete_endpoint(endpoint_id: str) -> dict[str, Any]:
    """Delete an endpoint and its queue; its unfinished tasks end cancelled."""
    state = service_state()
    with state.database.read() as conn:
        row = _owned(conn, endpoint_id)
    endpoint_id = row.endpoint_id
    _broker(lambda: state.publisher.delete_endpoint_queue(endpoint_id))
    if state.admin is not None:
        admin = state.admin
        _broker(lambda: admin.revoke(endpoint_id))
    with state.database.write() as conn:
        endpoint_store.mark_deleted(conn, endpoint_id)
        outstanding = task_store.outstanding_ids(conn, endpoint_id)
    cancel_tasks(
        state,
        [(task_id, endpoint_id) for task_id in outstanding],
        f"endpoint {endpoint_id} was deleted before the task finished",
        tell_endpoint=False,
    )
    return {"deleted": endpoint_id}


def _refuse_if_connected(state: ServiceState, row: Row[Any]) -> None:
    """409 while the endpoint heartbeats: registering again gives its RabbitMQ user a new
    password and closes its connections, so a second daemon (another login node sharing the
    home directory, a copied OUTPOST_HOME) would silently cut off the one that serves."""
    if row.deleted or not _heartbeating(state, row):
        return
    details = row.details or {}
    host, pid = details.get("hostname"), details.get("pid")
    seen = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(row.last_heartbeat))
    raise Conflict(
        f"endpoint {row.endpoint_id} ({row.name}) is connected: last heartbeat at {seen} from "
        f"host {host or 'unknown'}" + (f" (pid {pid})" if pid else "") + "; stop it first "
        "(`outpost-endpoint stop NAME` there) or register with force (`outpost-endpoint start "
        '--force`, or "force": true), which cuts the running endpoint off',
        details={
            "endpoint_id": row.endpoint_id,
            "connected": True,
            "last_heartbeat": row.last_heartbeat,
            "hostname": host,
            "pid": pid,
        },
    )


def _heartbeating(state: ServiceState, row: Row[Any]) -> bool:
    """Whether the endpoint's last heartbeat is recent and did not say ``offline``."""
    horizon = MISSED_HEARTBEATS * state.config.heartbeat_interval
    return (
        row.last_heartbeat is not None
        and time.time() - row.last_heartbeat <= horizon
        and row.reported_state != "offline"
    )


def _owned(conn: sa.Connection, endpoint_id: str) -> Row[Any]:
    row = endpoint_store.get_owned(conn, endpoint_id, current_user().user_id)
    if row is None:
        raise NotFound(
            f"no endpoint {endpoint_id} among yours", details={"endpoint_id": endpoint_id}
        )
    return row


def _describe(state: ServiceState, row: Row[Any], outstanding: int) -> dict[str, Any]:
    """An endpoint as listed; ``row`` comes from :mod:`..store.access` (it has ``owner_name``)."""
    online = _heartbeating(state, row)
    return {
        "endpoint_id": row.endpoint_id,
        "name": row.name,
        "state": "online" if online else "offline",
        "last_heartbeat": row.last_heartbeat,
        "details": row.details or {},
        "metadata": row._mapping["metadata"] or {},
        "outstanding_tasks": outstanding,
        "created_at": row.created_at,
        "owner": row.owner_name,
        "shared": row.owner != current_user().user_id,
        "allowed_functions": row.allowed_functions,
    }


def _endpoint_broker_urls(state: ServiceState, endpoint_id: str) -> list[str]:
    """The AMQP URLs the endpoint gets (one per cluster node): its own (new) user's, or the
    shared one."""
    urls = state.config.endpoint_broker_urls
    if state.admin is None:
        return urls
    admin = state.admin
    granted: list[tuple[str, str]] = []
    _broker(lambda: granted.append(admin.grant(endpoint_id)))
    user, password = granted[0]
    return [with_credentials(url, user, password) for url in urls]


def _broker(action: Callable[[], None]) -> None:
    """Run a broker operation; a broker failure is a 503 (and nothing was written yet)."""
    try:
        action()
    except BrokerError as exc:
        raise BrokerUnavailable(str(exc)) from exc
