"""Service configuration: one dataclass, filled from defaults, then the environment, then
explicit values (CLI options or the mapping given to :func:`outpost_service.create_app`)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from outpost.errors import ConfigurationError
from outpost.protocol import DEFAULT_PAYLOAD_LIMIT
from outpost.protocol.conventions import outpost_home
from outpost.protocol.tls import TlsFiles

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
#: Default limit on one HTTP request body; a batch of many tasks may be large.
DEFAULT_MAX_CONTENT_LENGTH = 64 * 1024 * 1024
#: Most tasks accepted in one ``POST /v1/tasks`` (and task ids in one ``POST /v1/results``).
DEFAULT_MAX_BATCH = 10_000
#: Largest endpoint metadata (registration) or heartbeat details, as compact JSON: 64 KiB.
DEFAULT_MAX_METADATA_BYTES = 64 * 1024
#: Request threads of ``serve`` (``--threads``).
DEFAULT_THREADS = 32

_ENV = {
    "database_url": "OUTPOST_DATABASE_URL",
    "amqp_url": "OUTPOST_AMQP_URL",
    "public_amqp_url": "OUTPOST_PUBLIC_AMQP_URL",
    "amqp_prefix": "OUTPOST_AMQP_PREFIX",
    "republish_after": "OUTPOST_REPUBLISH_AFTER",
    "task_expiry": "OUTPOST_TASK_EXPIRY",
    "management_url": "OUTPOST_AMQP_MANAGEMENT_URL",
    "broker_auth": "OUTPOST_BROKER_AUTH",
    "task_max_age": "OUTPOST_TASK_MAX_AGE",
    "rate_limit": "OUTPOST_RATE_LIMIT",
    "rate_burst": "OUTPOST_RATE_BURST",
    "max_metadata_bytes": "OUTPOST_MAX_METADATA_BYTES",
    "queue_type": "OUTPOST_QUEUE_TYPE",
    "tls_cert": "OUTPOST_TLS_CERT",
    "tls_key": "OUTPOST_TLS_KEY",
    "amqp_ca_file": "OUTPOST_AMQP_CA_FILE",
    "amqp_cert_file": "OUTPOST_AMQP_CERT_FILE",
    "amqp_key_file": "OUTPOST_AMQP_KEY_FILE",
    "longpoll_slots": "OUTPOST_LONGPOLL_SLOTS",
    "longpoll_per_user": "OUTPOST_LONGPOLL_PER_USER",
    "connection_limit": "OUTPOST_CONNECTION_LIMIT",
    "channel_timeout": "OUTPOST_CHANNEL_TIMEOUT",
    "dead_letter_max_length": "OUTPOST_DEAD_LETTER_MAX_LENGTH",
    "dead_letter_max_bytes": "OUTPOST_DEAD_LETTER_MAX_BYTES",
    "dead_letter_ttl": "OUTPOST_DEAD_LETTER_TTL",
    "endpoint_max_connections": "OUTPOST_ENDPOINT_MAX_CONNECTIONS",
    "endpoint_max_channels": "OUTPOST_ENDPOINT_MAX_CHANNELS",
}

#: ``broker_auth`` values: one RabbitMQ user per endpoint (made through the management API), or
#: the service's own ``public_amqp_url`` for every endpoint (brokers without the management
#: plugin; any endpoint can then read every queue -- see docs/SECURITY.md).
BROKER_AUTH_MODES = ("per-endpoint", "shared")
#: ``queue_type`` values: classic queues, or replicated quorum queues (docs/RELIABILITY.md).
QUEUE_TYPES = ("classic", "quorum")


#: Numeric settings, converted (and checked) in ``__post_init__``: environment values are text.
_FLOATS = (
    "republish_after",
    "task_expiry",
    "task_max_age",
    "rate_limit",
    "channel_timeout",
    "dead_letter_ttl",
)
_INTS = (
    "rate_burst",
    "longpoll_slots",
    "longpoll_per_user",
    "connection_limit",
    "dead_letter_max_length",
    "dead_letter_max_bytes",
    "endpoint_max_connections",
    "endpoint_max_channels",
    "max_metadata_bytes",
)


def _number(config: Any, name: str, kind: type[float] | type[int]) -> float | int:
    """``config.name`` as ``kind``, or a ConfigurationError naming the setting, its
    environment variable and the value."""
    value = getattr(config, name)
    try:
        return kind(value)
    except (TypeError, ValueError):
        what = "a whole number" if kind is int else "a number"
        env = f" (env {_ENV[name]})" if name in _ENV else ""
        raise ConfigurationError(f"{name}{env} must be {what}, got {value!r}") from None


def default_database_url() -> str:
    return f"sqlite:///{outpost_home() / 'service' / 'outpost.db'}"


@dataclass
class ServiceConfig:
    """Everything the service needs to run; every field has a working default."""

    database_url: str = field(default_factory=default_database_url)
    amqp_url: str = DEFAULT_AMQP_URL
    #: What endpoints are told to connect to (the broker's address as seen from the cluster).
    #: Empty means "the same as ``amqp_url``".
    public_amqp_url: str = ""
    #: Prefix of every exchange and queue; tests use a unique one so runs never collide.
    amqp_prefix: str = "outpost"
    #: Seconds a finished task (and its result) is kept: 14 days.
    result_retention: float = 14 * 24 * 3600.0
    #: Seconds between endpoint heartbeats; an endpoint is offline after 3 missed ones.
    heartbeat_interval: float = 10.0
    #: Largest decoded payload (function, argument set) accepted, in bytes.
    payload_limit: int = DEFAULT_PAYLOAD_LIMIT
    #: Largest HTTP request body, in bytes; also the size budget of one results answer.
    max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH
    max_batch: int = DEFAULT_MAX_BATCH
    #: Largest endpoint ``metadata`` accepted at registration (413 over it) and heartbeat
    #: ``details`` stored by ingest (replaced by a note over it), in bytes of compact JSON.
    #: Every endpoint's metadata is returned by ``GET /v1/endpoints``: keep lists cheap.
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES
    #: Messages the ingest consumer may hold unacknowledged (and stores per transaction).
    ingest_prefetch: int = 200
    #: Seconds between retention sweeps run by the ingest consumer.
    purge_interval: float = 300.0
    #: Publish attempts (each after a fresh connection) before a 503.
    publish_attempts: int = 3
    #: Seconds after which a stored task RabbitMQ never confirmed is published again by the
    #: sweeper of ``serve`` (see jobs/sweep.py).
    republish_after: float = 30.0
    #: Seconds after submission at which an unfinished task fails as ``expired``, for tasks
    #: whose resource_specification has no ``expires_after``; 0 (the default) means never.
    task_expiry: float = 0.0
    #: RabbitMQ management API (``http(s)://[user:password@]host:port/``); empty means the
    #: ``amqp_url`` host on its port + 10000 (15672 for 5672) with its credentials.
    management_url: str = ""
    #: ``per-endpoint`` (default) or ``shared``; see :data:`BROKER_AUTH_MODES`.
    broker_auth: str = "per-endpoint"
    #: Seconds after signing at which endpoints refuse a task or cancel message (bounds
    #: replays; allow for clock skew and for tasks waiting in a queue while an endpoint is
    #: offline): 7 days, the endpoint journal's tombstone lifetime.
    task_max_age: float = 7 * 24 * 3600.0
    #: Requests per second each API token may make on average (0 = no limit) ...
    rate_limit: float = 100.0
    #: ... and in one burst (see ratelimit.py).  Generous: a sequential latency benchmark
    #: makes ~150 requests/s for seconds; a runaway loop makes thousands.
    rate_burst: int = 1000
    #: ``classic`` (default: queues made by earlier versions keep working) or ``quorum``; a
    #: queue keeps the type it was made with (see broker/topology.py for migrating).
    queue_type: str = "classic"
    #: PEM certificate (chain) and unencrypted key: with both, ``serve`` speaks HTTPS itself
    #: (see http_server.py); without, plain HTTP for a TLS-terminating proxy in front.
    tls_cert: str = ""
    tls_key: str = ""
    #: For ``amqps://`` URLs: CA bundle that signed RabbitMQ's certificate (empty: the system
    #: store) and an optional client certificate and key for brokers that verify peers.
    amqp_ca_file: str = ""
    amqp_cert_file: str = ""
    amqp_key_file: str = ""
    #: Result long-polls that may wait at once in one service process; 0 (the default) sizes
    #: the pool from ``serve --threads``, keeping a quarter of the threads (at least 4) for
    #: ordinary requests (see longpoll.py).  Set, it must be smaller than ``--threads``.
    longpoll_slots: int = 0
    #: ... and how many of them one user may hold (a poll over either limit gets 429).
    longpoll_per_user: int = 16
    #: Open client connections the HTTP server accepts at once (waitress' connection_limit;
    #: each costs a file descriptor, not a thread, while it sends its request).
    connection_limit: int = 1000
    #: Seconds a client connection may stay silent, mid-request or between keep-alive
    #: requests, before the server closes it (bounds half-sent "slowloris" requests).
    channel_timeout: float = 30.0
    #: Caps of the dead-letter queue ``P.dead`` (an operator policy; the oldest messages are
    #: dropped first) and how long a dead letter is kept, in seconds (7 days).
    dead_letter_max_length: int = 100_000
    dead_letter_max_bytes: int = 256 * 1024 * 1024
    dead_letter_ttl: float = 7 * 24 * 3600.0
    #: RabbitMQ user limits of each per-endpoint broker user (an endpoint uses 2 connections
    #: with one channel each).
    endpoint_max_connections: int = 8
    endpoint_max_channels: int = 16

    @property
    def amqp_tls(self) -> TlsFiles:
        """The TLS files of the service's own RabbitMQ connections (used for ``amqps://``)."""
        return TlsFiles(self.amqp_ca_file, self.amqp_cert_file, self.amqp_key_file)

    def __post_init__(self) -> None:
        if self.broker_auth not in BROKER_AUTH_MODES:
            raise ConfigurationError(
                f"broker_auth must be one of {', '.join(BROKER_AUTH_MODES)}, got "
                f"{self.broker_auth!r}"
            )
        if self.queue_type not in QUEUE_TYPES:
            raise ConfigurationError(
                f"queue_type must be one of {', '.join(QUEUE_TYPES)}, got {self.queue_type!r}"
            )
        if not self.public_amqp_url:
            self.public_amqp_url = self.amqp_url
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigurationError(
                "HTTPS needs both tls_cert and tls_key (--tls-cert/--tls-key, OUTPOST_TLS_CERT/"
                f"OUTPOST_TLS_KEY); got certificate {self.tls_cert!r}, key {self.tls_key!r}"
            )
        for name in _FLOATS:
            setattr(self, name, _number(self, name, float))
        for name in _INTS:
            setattr(self, name, _number(self, name, int))
        if self.longpoll_slots < 0:
            raise ConfigurationError(
                f"longpoll_slots must be 0 (sized from the request threads) or a positive "
                f"number of long-polls, got {self.longpoll_slots!r}"
            )
        if self.rate_limit < 0:
            raise ConfigurationError(
                f"rate_limit must be 0 (no limit) or positive requests per second, got "
                f"{self.rate_limit!r}"
            )
        if self.task_expiry < 0:
            raise ConfigurationError(
                f"task_expiry must be 0 (never) or positive seconds, got {self.task_expiry!r}"
            )
        for name in (
            "result_retention",
            "heartbeat_interval",
            "purge_interval",
            "republish_after",
            "task_max_age",
            "channel_timeout",
            "dead_letter_ttl",
        ):
            if float(getattr(self, name)) <= 0:
                raise ConfigurationError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in (
            "payload_limit",
            "max_content_length",
            "max_batch",
            "max_metadata_bytes",
            "ingest_prefetch",
            "rate_burst",
            "longpoll_per_user",
            "connection_limit",
            "dead_letter_max_length",
            "dead_letter_max_bytes",
            "endpoint_max_connections",
            "endpoint_max_channels",
        ):
            if int(getattr(self, name)) <= 0:
                raise ConfigurationError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not self.amqp_prefix or any(c in self.amqp_prefix for c in " #*"):
            raise ConfigurationError(
                f"amqp_prefix must be a non-empty word without spaces, '#' or '*', "
                f"got {self.amqp_prefix!r}"
            )

    @classmethod
    def from_env(cls, **overrides: Any) -> ServiceConfig:
        """Defaults, then ``OUTPOST_*`` environment variables, then non-None ``overrides``."""
        values: dict[str, Any] = {}
        for name, var in _ENV.items():
            if os.environ.get(var):
                values[name] = os.environ[var]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(values, use_env=False)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], *, use_env: bool = True) -> ServiceConfig:
        """Build from a mapping of field names (lower or upper case, like Flask's config)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in mapping.items():
            name = key.lower()
            if name not in known:
                raise ConfigurationError(
                    f"unknown service setting {key!r}; known settings: {sorted(known)}"
                )
            values[name] = value
        if use_env:
            return cls.from_env(**values)
        return cls(**values)
