"""How the service reaches RabbitMQ: :class:`~outpost.runtime.amqp_connection.AmqpTarget`
with the service's numbers and the names of its settings (for errors that say what to fix)."""

from __future__ import annotations

from outpost.protocol.tls import TlsFiles
from outpost.runtime.amqp_connection import AmqpTarget

_CA_SETTING = "OUTPOST_AMQP_CA_FILE (serve --amqp-ca-file)"
_CERT_SETTING = "OUTPOST_AMQP_CERT_FILE and OUTPOST_AMQP_KEY_FILE"


def target(url: str, tls: TlsFiles | None = None, name: str = "outpost-service") -> AmqpTarget:
    """The service's broker: a dead one fails fast (5 s) so that callers can back off."""
    return AmqpTarget(url, name, tls, ca_setting=_CA_SETTING, cert_setting=_CERT_SETTING)
