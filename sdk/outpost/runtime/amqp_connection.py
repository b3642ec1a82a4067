"""Reaching RabbitMQ: connection parameters, opening a connection, and which errors are final.

The service and the endpoint connect the same way (URL, TLS verified against the configured CA
with the host name checked, a client certificate if set, a connection name for the management
UI, fast failure so the caller's backoff decides) and differ only in numbers and in the names
of their settings, which :class:`AmqpTarget` carries so that an error can say what to fix.

Errors fall in two groups.  :data:`RETRYABLE`: the broker is away, restarting, or dropped the
connection -- reconnect with backoff.  Final: the broker's certificate is not trusted or it wants
a client certificate (:class:`UntrustedBrokerError`, raised by :meth:`AmqpTarget.connect`), or it
refused the login (:func:`login_refused`) -- retrying cannot help; each side decides what to do
(the endpoint stops, the service answers 503 naming the setting).

A target may name several nodes of one RabbitMQ cluster (:attr:`AmqpTarget.urls`): every
connection, blocking or confirming, goes to the first node that answers, so a reconnect after
its node died lands on a surviving one with no code of the caller's (quorum queues keep the
messages there; docs/RELIABILITY.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pika
import pika.exceptions

from outpost.errors import ConfigurationError
from outpost.protocol.conventions import redact_url
from outpost.protocol.tls import TlsFiles, amqps_context, tls_failure

#: Errors after which a connection (or its channel) is dropped and opened again.
RETRYABLE = (pika.exceptions.AMQPError, OSError)

#: What pika raises when RabbitMQ refuses the login (ACCESS_REFUSED) or the vhost.
LOGIN_REFUSED = (
    pika.exceptions.ProbableAuthenticationError,
    pika.exceptions.AuthenticationError,
    pika.exceptions.ProbableAccessDeniedError,
)


class UntrustedBrokerError(ConfigurationError):
    """The TLS handshake with RabbitMQ failed on trust (its certificate, or ours): a setting
    must change, so retrying cannot help."""


def login_refused(exc: BaseException) -> bool:
    """Whether ``exc`` is RabbitMQ refusing the credentials (or the vhost)."""
    return isinstance(exc, LOGIN_REFUSED)


def split_urls(text: str) -> list[str]:
    """The URLs of a comma-separated list (``OUTPOST_AMQP_URLS``), blanks dropped; a comma in
    a password must be written ``%2C``."""
    return [part.strip() for part in text.split(",") if part.strip()]


@dataclass(frozen=True)
class AmqpTarget:
    """One broker as one side reaches it, and how to tell its operator what to fix."""

    url: str
    #: Shown as ``connection_name`` in RabbitMQ's management UI.
    name: str
    tls: TlsFiles | None = None
    #: The setting that names the CA bundle, as this side's operator writes it.
    ca_setting: str = "the AMQP CA file setting"
    #: The settings that name the client certificate and key.
    cert_setting: str = "the AMQP client certificate settings"
    socket_timeout: float = 5.0
    #: Seconds a connection RabbitMQ blocked (memory or disk alarm) waits before it is dropped.
    blocked_connection_timeout: float = 30.0
    #: Further nodes of the same cluster, tried in order after ``url``'s.
    other_urls: tuple[str, ...] = ()

    @classmethod
    def of(cls, urls: str | Sequence[str], name: str, **options: object) -> AmqpTarget:
        """A target for ``urls``: one URL, or the nodes of one cluster in the order to try."""
        nodes = [urls] if isinstance(urls, str) else list(urls)
        if not nodes:
            raise ConfigurationError("no RabbitMQ URL given")
        return cls(nodes[0], name, other_urls=tuple(nodes[1:]), **options)  # type: ignore[arg-type]

    @property
    def urls(self) -> tuple[str, ...]:
        """Every node's URL, in the order they are tried."""
        return (self.url, *self.other_urls)

    def parameters(self, url: str | None = None) -> pika.URLParameters:
        """Connection parameters of ``url`` (default: the first node); one attempt only, so that
        the caller's backoff decides.

        ``amqps://`` is TLS verified against ``tls.ca_file`` (else the system store) with the
        host name checked, showing ``tls``'s client certificate if set; pika alone would use
        the system store only.  ``tls`` is ignored for ``amqp://`` and for URLs with pika's own
        ``ssl_options`` query argument.  Unreadable files raise ConfigurationError."""
        url = url or self.url
        params = pika.URLParameters(url)
        context = amqps_context(url, self.tls)
        if context is not None:
            params.ssl_options = pika.SSLOptions(context, server_hostname=params.host)
        params.connection_attempts = 1
        params.socket_timeout = self.socket_timeout
        params.blocked_connection_timeout = self.blocked_connection_timeout
        params.client_properties = {"connection_name": self.name}
        return params

    def all_parameters(self) -> list[pika.URLParameters]:
        """The parameters of every node, in the order they are tried."""
        return [self.parameters(url) for url in self.urls]

    def tls_problem(self, exc: BaseException | None) -> str | None:
        """If ``exc`` is a TLS trust failure, what failed and which setting fixes it."""
        if exc is None:
            return None
        return tls_failure(exc, ca_setting=self.ca_setting, cert_setting=self.cert_setting)

    def untrusted(self, exc: BaseException) -> UntrustedBrokerError | None:
        """``exc`` as an :class:`UntrustedBrokerError` if it is a TLS trust failure."""
        problem = self.tls_problem(exc)
        if problem is None:
            return None
        return UntrustedBrokerError(f"cannot connect to RabbitMQ at {self.shown()}: {problem}")

    def shown(self) -> str:
        """The URLs without passwords, for messages."""
        return ", ".join(redact_url(url) for url in self.urls)

    def connect(self) -> pika.BlockingConnection:
        """Open a blocking connection to the first node that answers, owned by the calling
        thread (pika is not thread-safe).

        Raises one of :data:`RETRYABLE` (the last node's error), or
        :class:`UntrustedBrokerError`."""
        params = self.all_parameters() if self.other_urls else self.parameters()
        try:
            return pika.BlockingConnection(params)
        except RETRYABLE as exc:
            final = self.untrusted(exc)
            if final is None:
                raise
            raise final from exc
