"""What one app instance shares between requests: config, database, broker, notifier, cache."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app

from outpost_service.broker.publisher import Publisher
from outpost_service.broker.topology import Topology
from outpost_service.cache import FunctionCache
from outpost_service.config import ServiceConfig
from outpost_service.notifier import ResultNotifier
from outpost_service.store import Database

EXTENSION = "outpost"


@dataclass
class ServiceState:
    config: ServiceConfig
    database: Database
    topology: Topology
    publisher: Publisher
    notifier: ResultNotifier = field(default_factory=ResultNotifier)
    functions: FunctionCache = field(default_factory=FunctionCache)

    @classmethod
    def build(cls, config: ServiceConfig) -> ServiceState:
        topology = Topology(config.amqp_prefix)
        return cls(
            config=config,
            database=Database(config.database_url),
            topology=topology,
            publisher=Publisher(config.amqp_url, topology, attempts=config.publish_attempts),
        )

    def close(self) -> None:
        """Release connections (server shutdown)."""
        self.notifier.close()
        self.publisher.close()
        self.database.dispose()


def service_state() -> ServiceState:
    """The state of the app handling the current request."""
    state: ServiceState = current_app.extensions[EXTENSION]
    return state
