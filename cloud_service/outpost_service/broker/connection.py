"""Connecting to RabbitMQ: the parameters and recoverable errors shared by publisher and ingest."""

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
