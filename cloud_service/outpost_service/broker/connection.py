"""Connecting to RabbitMQ: parameters and the backoff shared by the publisher and ingest."""

from __future__ import annotations

import pika

#: Errors after which a connection (or its channel) is dropped and rebuilt.
RECOVERABLE = (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError, OSError)


def parameters(url: str) -> pika.URLParameters:
    """Connection parameters for ``url``; a dead broker fails fast so callers can back off."""
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = 5
    params.blocked_connection_timeout = 30
    params.client_properties = {"connection_name": "outpost-service"}
    return params


def backoff(attempt: int, *, base: float = 0.2, cap: float = 5.0) -> float:
    """Seconds to wait before reconnect attempt number ``attempt`` (0-based)."""
    return float(min(cap, base * (2**attempt)))


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    params = pika.URLParameters(url)
    return f"amqp://{params.host}:{params.port}/"
