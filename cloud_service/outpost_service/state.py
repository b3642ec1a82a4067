"""What one app instance shares between requests: config, database, broker, notifier, cache."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field

from flask import current_app

from outpost_service.broker.admin import (
    BrokerAdmin,
    default_management_url,
    passive_declare_checked,
)
from outpost_service.broker.publisher import Publisher
from outpost_service.broker.topology import Topology
from outpost_service.cache import FunctionCache
from outpost_service.config import ServiceConfig
from outpost_service.errors import BrokerError
from outpost_service.longpoll import LongPollGate
from outpost_service.notifier import ResultNotifier
from outpost_service.ratelimit import RateLimiter
from outpost_service.store import Database
from outpost_service.store.secrets import load_or_create_secret
from outpost_service.task_signing import load_or_create_signer

EXTENSION = "outpost"
#: The ``meta`` row holding the key behind task queue names (broker/topology.py says why).
QUEUE_KEY_NAME = "task_queue_key"

log = logging.getLogger(__name__)


@dataclass
class ServiceState:
    config: ServiceConfig
    database: Database
    topology: Topology
    publisher: Publisher
    notifier: ResultNotifier = field(default_factory=ResultNotifier)
    functions: FunctionCache = field(default_factory=FunctionCache)
    #: Makes per-endpoint broker users; None when ``broker_auth`` is ``shared``.
    admin: BrokerAdmin | None = None
    #: Per-token request rate limits; None when ``rate_limit`` is 0.
    limiter: RateLimiter | None = None
    #: Admission of waiting result long-polls (see longpoll.py).
    longpolls: LongPollGate = field(default_factory=lambda: LongPollGate(24, 16))

    @classmethod
    def build(cls, config: ServiceConfig) -> ServiceState:
        """The state of one service process: the database's schema is created (or checked)
        here, and the deployment's secrets read from it (made on first start)."""
        database = Database(config.database_url)
        database.ensure_schema()
        topology = Topology(
            config.amqp_prefix,
            config.queue_type,
            queue_key=load_or_create_secret(database, QUEUE_KEY_NAME, new_queue_key),
        )
        if len(config.broker_urls) > 1 and config.queue_type == "classic":
            log.warning(
                "amqp_urls names %d RabbitMQ nodes but queue_type is 'classic': a classic queue "
                "lives on one node and is out of reach while it is down; use quorum queues on "
                'a cluster (docs/RELIABILITY.md, "Queue types")',
                len(config.broker_urls),
            )
        admin = None
        if config.broker_auth == "per-endpoint":
            admin = broker_admin(config, topology)
        else:
            log.warning(
                "broker_auth is 'shared': every endpoint gets the service's own RabbitMQ "
                "credentials and could read any endpoint's tasks; use 'per-endpoint' with the "
                "management plugin (docs/SECURITY.md)"
            )
        publisher = Publisher(
            config.broker_urls, topology, attempts=config.publish_attempts, tls=config.amqp_tls
        )
        publisher.signer = load_or_create_signer(database)
        return cls(
            config=config,
            database=database,
            topology=topology,
            publisher=publisher,
            admin=admin,
            limiter=RateLimiter(config.rate_limit, config.rate_burst)
            if config.rate_limit
            else None,
            longpolls=LongPollGate(config.longpoll_slots, config.longpoll_per_user),
        )

    def close(self) -> None:
        """Release connections (server shutdown)."""
        self.notifier.close()
        self.publisher.close()
        if self.admin is not None:
            self.admin.close()
        self.database.dispose()


def new_queue_key() -> str:
    return secrets.token_hex(32)


def broker_admin(config: ServiceConfig, topology: Topology | None = None) -> BrokerAdmin:
    """A client of RabbitMQ's management API (per-endpoint broker users) for ``config``;
    ``topology`` names the queues (by default ``config``'s, without the queue-name key, which
    only making broker users needs)."""
    return BrokerAdmin(
        config.management_url or default_management_url(config.broker_urls[0]),
        config.broker_urls[0],
        topology or Topology(config.amqp_prefix, config.queue_type),
        ca_file=config.amqp_ca_file,
        # without an explicit one, every cluster node's API (each serves the whole cluster)
        other_management_urls=[]
        if config.management_url
        else [default_management_url(url) for url in config.broker_urls[1:]],
        user_limits={
            "max-connections": config.endpoint_max_connections,
            "max-channels": config.endpoint_max_channels,
        },
    )


def prepare_broker(config: ServiceConfig, admin: BrokerAdmin | None = None) -> bool:
    """At start: cap the dead-letter queue by operator policy, and warn when the broker is too
    old to check passive declarations (broker/admin.py); True when the cap is set.  A failure
    is logged, not raised: the service works without the cap, and says so."""
    if config.broker_auth != "per-endpoint":
        log.warning(
            "broker_auth is 'shared': the dead-letter queue %s.dead is not capped by the service "
            "(no management API); set a policy with max-length / max-length-bytes / message-ttl "
            "on it (docs/SECURITY.md)",
            config.amqp_prefix,
        )
        return False
    own = admin is None
    if admin is None:
        admin = broker_admin(config)
    try:
        admin.limit_dead_letters(
            config.dead_letter_max_length, config.dead_letter_max_bytes, config.dead_letter_ttl
        )
        version = admin.broker_version()
        if not passive_declare_checked(version):
            log.info(
                "RabbitMQ %s answers passive queue declarations without a permission check "
                "(4.2.6 and later check): task queue names carry a secret tag, so an endpoint "
                "cannot name another's queue to ask (broker/topology.py, docs/SECURITY.md)",
                ".".join(map(str, version)) if version else "(unknown version)",
            )
        return True
    except BrokerError as exc:
        log.warning("the dead-letter queue is not capped: %s", exc)
        return False
    finally:
        if own:
            admin.close()


def service_state() -> ServiceState:
    """The state of the app handling the current request."""
    state: ServiceState = current_app.extensions[EXTENSION]
    return state
