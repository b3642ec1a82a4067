"""What the endpoint needs to reach RabbitMQ: the registration's ``amqp`` settings, and
connection failures said in the endpoint's terms (its config.yaml settings, its errors).

Opening a connection is :mod:`outpost.runtime.amqp_connection`'s.  Each AMQP user owns its own
connection: the task consumer a ``BlockingConnection`` on its thread (pika connections are not
thread-safe), the result publisher a :class:`~outpost.runtime.amqp_confirms.ConfirmingConnection`.
When RabbitMQ goes away both reconnect with :class:`~outpost.runtime.backoff.Backoff`, so that
a fleet of endpoints does not come back in lock-step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pika
from pydantic import ValidationError

from outpost.errors import ConfigurationError
from outpost.protocol.api import BrokerSettings
from outpost.protocol.conventions import redact_url
from outpost.protocol.signing import DEFAULT_MAX_AGE, SignatureError, Verifier
from outpost.protocol.tls import TlsFiles
from outpost.runtime.amqp_connection import AmqpTarget, UntrustedBrokerError, login_refused
from outpost_endpoint.errors import BrokerError, ConfigError


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
    #: The service's task-signing public key (base64 Ed25519); None: accept unsigned tasks.
    task_signing_key: str | None = None
    #: Seconds after signing at which a task or cancel message is refused.
    task_max_age: float = DEFAULT_MAX_AGE
    #: CA and client certificate for ``amqps://`` (config.yaml ``amqp_ca_file`` etc.).
    tls: TlsFiles = field(default_factory=TlsFiles)

    #: Further nodes of the same RabbitMQ cluster, tried in order after ``url``'s.
    other_urls: tuple[str, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        """Every node's URL, in the order connections try them."""
        return (self.url, *self.other_urls)

    def target(self, name: str) -> AmqpTarget:
        """How this endpoint's connection ``name`` reaches RabbitMQ (any of its nodes)."""
        return target(self.urls, name, self.tls)

    def shown(self) -> str:
        """The URLs without passwords, for messages."""
        return ", ".join(redact_url(url) for url in self.urls)

    @classmethod
    def from_registration(
        cls,
        data: dict[str, Any],
        *,
        url_override: str | Sequence[str] | None = None,
        tls: TlsFiles | None = None,
    ) -> AmqpSettings:
        """Build from the service's answer (:class:`~outpost.protocol.api.BrokerSettings`),
        raising a clear :class:`BrokerError` if a field is missing or malformed.

        ``url_override`` (config.yaml ``amqp_url`` or ``amqp_urls``) replaces the nodes the
        service named, keeping the credentials it issued."""
        overrides = [url_override] if isinstance(url_override, str) else list(url_override or ())
        given = dict(data)
        given.setdefault("heartbeat_interval", 30.0)  # services before it was sent
        if overrides and not isinstance(given.get("url"), str):
            given["url"] = overrides[0]
        try:
            answer = BrokerSettings.model_validate(given)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'amqp'}: {error['msg']}"
                for error in exc.errors()
            )
            raise BrokerError(
                f"the service's registration answer has unusable amqp settings ({problems}); "
                "the service and endpoint versions may not match"
            ) from None
        key = answer.task_signing_key or None
        if key:
            try:
                Verifier(key)
            except SignatureError as exc:
                raise BrokerError(
                    f"the service's task_signing_key is unusable ({exc}); the service and "
                    "endpoint versions may not match"
                ) from exc
        issued = answer.urls or [answer.url]
        urls = [_override(url, issued[0]) for url in overrides] if overrides else issued
        return cls(
            url=urls[0],
            other_urls=tuple(urls[1:]),
            task_exchange=answer.task_exchange,
            task_queue=answer.task_queue,
            result_exchange=answer.result_exchange,
            result_routing_key=answer.result_routing_key,
            status_routing_key=answer.status_routing_key,
            heartbeat_interval=answer.heartbeat_interval,
            task_signing_key=key,
            task_max_age=DEFAULT_MAX_AGE if answer.task_max_age is None else answer.task_max_age,
            tls=tls or TlsFiles(),
        )


def _override(override: str, given: Any) -> str:
    """The configured ``amqp_url`` (the broker as seen from this host), keeping the per-endpoint
    user and password the service issued when the configured URL carries none."""
    parts = urlsplit(override)
    issued = urlsplit(given) if isinstance(given, str) else None
    if parts.password or issued is None or not issued.password or not parts.hostname:
        return override
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = f"{issued.username or ''}:{issued.password}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def credentials_refused(exc: BaseException, url: str) -> str | None:
    """The reason to stop for good if ``exc`` is RabbitMQ refusing our credentials, else None.

    A running endpoint only meets this after its password was rotated (the endpoint was
    registered again: ``outpost-endpoint start`` elsewhere, or ``POST /v1/endpoints`` with
    force) or its user deleted (the endpoint was deleted); reconnecting forever with a dead
    password would look alive to ``status`` while serving nothing."""
    if not login_refused(exc):
        return None
    return (
        f"RabbitMQ at {redact_url(url)} refused this endpoint's credentials (ACCESS_REFUSED): "
        "the endpoint was registered again elsewhere (another `outpost-endpoint start` of it, "
        "e.g. from a copied OUTPOST_HOME, or a forced registration) or deleted on the service; "
        "this instance stopped. Start it again with `outpost-endpoint start NAME` once the "
        "other instance is stopped"
    )


def target(urls: str | Sequence[str], name: str, tls: TlsFiles | None = None) -> AmqpTarget:
    """How the endpoint reaches RabbitMQ (one node, or a cluster's nodes in the order to try):
    errors name config.yaml's settings."""
    return AmqpTarget.of(
        urls,
        name,
        tls=tls,
        ca_setting="amqp_ca_file in config.yaml",
        cert_setting="amqp_cert_file and amqp_key_file in config.yaml",
        socket_timeout=10.0,
        blocked_connection_timeout=60.0,
    )


@contextlib.contextmanager
def endpoint_errors() -> Iterator[None]:
    """Say a final connection failure in the endpoint's terms: unusable TLS files are a
    :class:`ConfigError`, an untrusted broker a :class:`BrokerError` naming the setting."""
    try:
        yield
    except UntrustedBrokerError as exc:
        raise BrokerError(str(exc)) from exc
    except ConfigurationError as exc:
        raise ConfigError(f"{exc} (amqp_ca_file/amqp_cert_file/amqp_key_file)") from exc


def connect(
    url: str | Sequence[str], name: str, tls: TlsFiles | None = None
) -> pika.BlockingConnection:
    """Open one blocking connection to the first of ``url``'s nodes that answers (the caller's
    thread owns it).

    ``amqps://`` is TLS verified against ``tls.ca_file`` (config.yaml ``amqp_ca_file``; else
    the system store) with the host name checked, showing ``tls``'s client certificate if
    set.  A certificate the endpoint does not trust (or a broker wanting a client certificate)
    raises :class:`BrokerError` saying which setting fixes it: retrying cannot help."""
    with endpoint_errors():
        return target(url, name, tls).connect()
