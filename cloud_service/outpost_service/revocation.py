"""Revoking a user (``outpost-service revoke-user NAME``): every token, and every endpoint's
broker access.

Why both: revoking only the API tokens leaves the user's running endpoints connected to
RabbitMQ with their own per-endpoint credentials (broker/admin.py), still taking tasks from
their queues -- including tasks other users send to an endpoint shared with them.  So the
endpoints' broker users are deleted and their open connections closed: the daemon cannot
consume or reconnect, and cannot register again either (that needs a token).  Tasks already
queued stay in the queues (nothing is lost); they run if the operator restores the user.

The tokens are revoked first, in one transaction, so a broker failure halfway leaves the user
unable to use the API; running the command again finishes the broker part (it is idempotent).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from outpost_service.config import ServiceConfig
from outpost_service.errors import BrokerError, ServiceError
from outpost_service.state import broker_admin
from outpost_service.store import Database
from outpost_service.store import endpoints as endpoint_store
from outpost_service.store.users import find_user, revoke_user_tokens


class UnknownUser(ServiceError):
    """No user has the name given."""


@dataclass
class Revocation:
    """What :func:`revoke_user` did."""

    user: str
    tokens_revoked: int
    #: Endpoints whose broker users were deleted (and connections closed).
    endpoints: list[str] = field(default_factory=list)
    #: Set when endpoints share the service's broker login (``broker_auth: shared``).
    shared_broker_login: bool = False


def revoke_user(config: ServiceConfig, database: Database, name: str) -> Revocation:
    """Revoke user ``name``'s tokens and cut their endpoints off the broker (see above)."""
    with database.write() as conn:
        user = find_user(conn, name)
        if user is None:
            raise UnknownUser(
                f"no user named {name!r}; the names are those given to `outpost-service "
                "create-user`"
            )
        revoked = revoke_user_tokens(conn, user)
        endpoint_ids = endpoint_store.owned_ids(conn, user.user_id)
    outcome = Revocation(name, revoked)
    if config.broker_auth != "per-endpoint":
        outcome.shared_broker_login = True
        return outcome
    admin = broker_admin(config)
    try:
        for endpoint_id in endpoint_ids:
            admin.revoke(endpoint_id)
            outcome.endpoints.append(endpoint_id)
    except BrokerError as exc:
        raise BrokerError(
            f"user {name!r}: {revoked} token(s) revoked, but cutting endpoint {endpoint_id} off "
            f"the broker failed: {exc}; fix that and run revoke-user again to finish"
        ) from exc
    finally:
        admin.close()
    return outcome
