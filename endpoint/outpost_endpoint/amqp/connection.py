"""What the endpoint needs to reach RabbitMQ, and how it reconnects.

Each AMQP user (task consumer, result publisher) opens its *own* ``BlockingConnection`` on its
own thread: pika connections are not thread-safe, and sharing one is the classic way to corrupt
a channel.  When RabbitMQ goes away both retry with exponential backoff plus jitter so that a
fleet of endpoints does not reconnect in lock-step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pika

from outpost_endpoint.errors import BrokerError


@dataclass(frozen=True)
class AmqpSettings:
    """The ``amqp`` object of the registration answer (see ARCHITECTURE.md)."""

    url: str
    task_exchange: str
    task_queue: str
    result_exchange: str
    result_routing_key: str
    status_routing_key: str
    heartbeat_interval: float = 30.0

    @classmethod
    def from_registration(
        cls, data: dict[str, Any], *, url_override: str | None = None
    ) -> AmqpSettings:
        """Build from the service's answer, raising a clear error if a field is missing."""
        missing = [
            name
            for name in (
                "url",
                "task_exchange",
                "task_queue",
                "result_exchange",
                "result_routing_key",
                "status_routing_key",
            )
            if not isinstance(data.get(name), str) and not (name == "url" and url_override)
        ]
        if missing:
            raise BrokerError(
                f"the service's registration answer lacks amqp field(s) {', '.join(missing)}; "
                "the service and endpoint versions may not match"
            )
        interval = data.get("heartbeat_interval", 30.0)
        return cls(
            url=url_override or data["url"],
            task_exchange=data["task_exchange"],
            task_queue=data["task_queue"],
            result_exchange=data["result_exchange"],
            result_routing_key=data["result_routing_key"],
            status_routing_key=data["status_routing_key"],
            heartbeat_interval=float(interval) if isinstance(interval, (int, float)) else 30.0,
        )


def connect(url: str, name: str) -> pika.BlockingConnection:
    """Open one blocking connection (the caller's thread owns it)."""
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = 10
    params.blocked_connection_timeout = 60
    params.client_properties = {"connection_name": name}
    return pika.BlockingConnection(params)
