"""Connecting to RabbitMQ: the parameters and recoverable errors shared by publisher and ingest."""

from __future__ import annotations

import pika

from outpost.protocol.tls import TlsFiles, amqps_context, tls_failure

#: Errors after which a connection (or its channel) is dropped and rebuilt.
RECOVERABLE = (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError, OSError)


def parameters(url: str, tls: TlsFiles | None = None) -> pika.URLParameters:
    """Connection parameters for ``url``; a dead broker fails fast so callers can back off.

    ``amqps://`` is TLS verified against ``tls.ca_file`` (else the system store) with the host
    name checked, showing ``tls``'s client certificate if set; pika alone would use the system
    store only.  ``tls`` is ignored for ``amqp://`` and for URLs with pika's own ``ssl_options``
    query argument.  Bad files raise ConfigurationError now, at start."""
    params = pika.URLParameters(url)
    context = amqps_context(url, tls)
    if context is not None:
        params.ssl_options = pika.SSLOptions(context, server_hostname=params.host)
    params.connection_attempts = 1
    params.socket_timeout = 5
    params.blocked_connection_timeout = 30
    params.client_properties = {"connection_name": "outpost-service"}
    return params


def tls_problem(exc: BaseException | None) -> str | None:
    """If ``exc`` is a TLS trust failure, what to set to fix it (else None)."""
    if exc is None:
        return None
    return tls_failure(
        exc,
        ca_setting="OUTPOST_AMQP_CA_FILE (serve --amqp-ca-file)",
        cert_setting="OUTPOST_AMQP_CERT_FILE and OUTPOST_AMQP_KEY_FILE",
    )
