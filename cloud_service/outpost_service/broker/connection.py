"""How the service reaches RabbitMQ: :class:`~outpost.runtime.amqp_connection.AmqpTarget`
with the service's numbers and the names of its settings (for errors that say what to fix)."""

from __future__ import annotations

from collections.abc import Sequence

from outpost.protocol.tls import TlsFiles
from outpost.runtime.amqp_connection import AmqpTarget

_CA_SETTING = "OUTPOST_AMQP_CA_FILE (serve --amqp-ca-file)"
_CERT_SETTING = "OUTPOST_AMQP_CERT_FILE and OUTPOST_AMQP_KEY_FILE"


def target(
    urls: str | Sequence[str], tls: TlsFiles | None = None, name: str = "outpost-service"
) -> AmqpTarget:
    """The service's broker (one node, or a cluster's nodes in the order to try): a dead node
    fails fast (5 s) so that the next is tried and callers can back off."""
    return AmqpTarget.of(urls, name, tls=tls, ca_setting=_CA_SETTING, cert_setting=_CERT_SETTING)
