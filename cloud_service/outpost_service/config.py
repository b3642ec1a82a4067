"""Service configuration: one typed model, filled from defaults, then the environment, then
explicit values (CLI options or the mapping given to :func:`outpost_service.create_app`).

Every setting ``name`` is read from the environment variable ``OUTPOST_<NAME>`` (one exception,
kept from before: :data:`ENV_EXCEPTIONS`); docs/CONFIGURATION.md lists them all, generated from
this model by ``scripts/config_docs.py``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from outpost.errors import ConfigurationError
from outpost.protocol import DEFAULT_PAYLOAD_LIMIT
from outpost.protocol.conventions import outpost_home
from outpost.protocol.tls import TlsFiles
from outpost.runtime.amqp_connection import split_urls
from outpost.runtime.settings import choices, did_you_mean, shown

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
#: Largest endpoint metadata (registration) or heartbeat details, as compact JSON: 64 KiB.
DEFAULT_MAX_METADATA_BYTES = 64 * 1024
#: Request threads of ``serve`` (``--threads``).
DEFAULT_THREADS = 32
#: Settings whose environment variable is not ``OUTPOST_<NAME>``.
ENV_EXCEPTIONS = {"management_url": "OUTPOST_AMQP_MANAGEMENT_URL"}


def env_variable(name: str) -> str:
    """The environment variable of setting ``name``."""
    return ENV_EXCEPTIONS.get(name, f"OUTPOST_{name.upper()}")


def default_database_url() -> str:
    return f"sqlite:///{outpost_home() / 'service' / 'outpost.db'}"


class ServiceConfig(BaseModel):
    """Everything the service needs to run; every field has a working default.

    Values from the environment are text and are converted; a bad value raises
    :class:`~outpost.errors.ConfigurationError` naming the setting (and its variable, when it
    came from the environment), the value and what is allowed.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, use_attribute_docstrings=True
    )

    database_url: str = Field(default_factory=default_database_url)
    """sqlite:///PATH or postgresql+psycopg://USER@HOST/DB (default: a SQLite file under
    $OUTPOST_HOME/service/)."""
    amqp_url: str = DEFAULT_AMQP_URL
    """The service's RabbitMQ URL."""
    public_amqp_url: str = ""
    """What endpoints are told to connect to (the broker's address as seen from the cluster);
    empty means the same as amqp_url."""
    amqp_urls: str = ""
    """The nodes of a RabbitMQ cluster, comma-separated URLs tried in order (each connection
    goes to the first that answers, and to a surviving one when its node dies); given, it
    replaces amqp_url.  Use queue_type quorum with it (docs/RELIABILITY.md)."""
    public_amqp_urls: str = ""
    """The cluster's nodes as endpoints reach them, comma-separated; empty means
    public_amqp_url if set, else amqp_urls."""
    amqp_prefix: str = "outpost"
    """Prefix of every exchange and queue; tests use a unique one so runs never collide."""
    result_retention: float = Field(14 * 24 * 3600.0, gt=0)
    """Seconds a finished task (and its result) is kept: 14 days."""
    heartbeat_interval: float = Field(10.0, gt=0)
    """Seconds between endpoint heartbeats; an endpoint is offline after 3 missed ones."""
    payload_limit: int = Field(DEFAULT_PAYLOAD_LIMIT, gt=0)
    """Largest decoded payload (function, argument set) accepted, in bytes."""
    max_content_length: int = Field(64 * 1024 * 1024, gt=0)
    """Largest HTTP request body, in bytes (a batch of many tasks may be large); also the size
    budget of one results answer."""
    max_batch: int = Field(10_000, gt=0)
    """Most tasks accepted in one POST /v1/tasks (and task ids in one POST /v1/results)."""
    max_metadata_bytes: int = Field(DEFAULT_MAX_METADATA_BYTES, gt=0)
    """Largest endpoint metadata accepted at registration (413 over it) and heartbeat details
    stored by ingest (replaced by a note over it), in bytes of compact JSON.  Every endpoint's
    metadata is returned by GET /v1/endpoints: keep lists cheap."""
    ingest_prefetch: int = Field(200, gt=0)
    """Messages the ingest consumer may hold unacknowledged (and stores per transaction)."""
    purge_interval: float = Field(300.0, gt=0)
    """Seconds between retention sweeps run by the ingest consumer."""
    publish_attempts: int = Field(3, gt=0)
    """Publish attempts (each after a fresh connection) before a 503."""
    republish_after: float = Field(30.0, gt=0)
    """Seconds after which a stored task RabbitMQ never confirmed is published again by the
    sweeper (see jobs/sweep.py)."""
    task_expiry: float = Field(0.0, ge=0)
    """Seconds after submission at which an unfinished task fails as expired, for tasks whose
    resource_specification has no expires_after; 0 means never."""
    management_url: str = ""
    """RabbitMQ management API, http(s)://[user:password@]host:port/; empty means the
    amqp_url host on its port + 10000 (15672 for 5672) with its credentials."""
    broker_auth: Literal["per-endpoint", "shared"] = "per-endpoint"
    """per-endpoint: one RabbitMQ user per endpoint, made through the management API; shared:
    every endpoint gets public_amqp_url (brokers without the management plugin; any endpoint
    can then read every queue -- see docs/SECURITY.md)."""
    task_max_age: float = Field(7 * 24 * 3600.0, gt=0)
    """Seconds after signing at which endpoints refuse a task or cancel message (bounds
    replays; allow for clock skew and for tasks waiting in a queue while an endpoint is
    offline): 7 days, the endpoint journal's tombstone lifetime."""
    rate_limit: float = Field(100.0, ge=0)
    """Requests per second each API token may make on average; 0 means no limit."""
    rate_burst: int = Field(1000, gt=0)
    """Requests one token may make in one burst (see ratelimit.py).  Generous: a sequential
    latency benchmark makes ~150 requests/s for seconds; a runaway loop makes thousands."""
    queue_type: Literal["classic", "quorum"] = "classic"
    """classic (queues made by earlier versions keep working) or quorum (replicated); a queue
    keeps the type it was made with (see broker/topology.py for migrating)."""
    tls_cert: str = ""
    """PEM certificate (chain): with tls_key, serve speaks HTTPS itself (see http_server.py);
    without, plain HTTP for a TLS-terminating proxy in front."""
    tls_key: str = ""
    """The certificate's unencrypted PEM key."""
    amqp_ca_file: str = ""
    """For amqps:// URLs: the CA bundle that signed RabbitMQ's certificate (empty: the system
    store)."""
    amqp_cert_file: str = ""
    """For amqps:// URLs: a client certificate (PEM) for brokers that verify peers."""
    amqp_key_file: str = ""
    """... and its key."""
    longpoll_slots: int = Field(1000, gt=0)
    """Result long-polls that may wait at once in one service process; serve gives each a
    request thread of its own on top of --threads, which all stay for ordinary requests (see
    longpoll.py; a blocked thread costs about 16 KiB).  Keep connection_limit above it."""
    longpoll_per_user: int = Field(16, gt=0)
    """Waiting long-polls one user may hold (a poll over either limit gets 429)."""
    wakeup_recheck: float = Field(5.0, gt=0)
    """With a PostgreSQL database: seconds between each service process's safety re-checks of
    the tasks its long-polls wait for (one query per process), in case a cross-process wake-up
    was lost (see broker/wakeups.py); a lost one delays a result at most this long."""
    connection_limit: int = Field(2000, gt=0)
    """Open client connections the HTTP server accepts at once (each costs a file descriptor,
    not a thread, while it sends its request)."""
    channel_timeout: float = Field(30.0, gt=0)
    """Seconds a client connection may stay silent, mid-request or between keep-alive
    requests, before the server closes it (bounds half-sent "slowloris" requests)."""
    dead_letter_max_length: int = Field(100_000, gt=0)
    """Most messages kept in the dead-letter queue P.dead (an operator policy; the oldest are
    dropped first)."""
    dead_letter_max_bytes: int = Field(256 * 1024 * 1024, gt=0)
    """Most bytes kept in the dead-letter queue."""
    dead_letter_ttl: float = Field(7 * 24 * 3600.0, gt=0)
    """Seconds a dead letter is kept: 7 days."""
    endpoint_max_connections: int = Field(8, gt=0)
    """RabbitMQ connection limit of each per-endpoint broker user (an endpoint uses 2)."""
    endpoint_max_channels: int = Field(16, gt=0)
    """RabbitMQ channel limit of each per-endpoint broker user (an endpoint uses one per
    connection)."""
    metrics_token: str = ""
    """The bearer token GET /metrics requires (give it to the Prometheus scraper); empty turns
    /metrics off (403).  Not a user token: see docs/SECURITY.md."""
    metrics_listen: str = ""
    """HOST:PORT where `outpost-service ingest` serves GET /metrics (same metrics_token rule);
    empty: none (serve answers /metrics on its own port)."""

    @property
    def broker_urls(self) -> list[str]:
        """The service's RabbitMQ nodes in the order to try: amqp_urls, else amqp_url."""
        return split_urls(self.amqp_urls) or [self.amqp_url]

    @property
    def endpoint_broker_urls(self) -> list[str]:
        """The RabbitMQ nodes endpoints are told to try, in order."""
        if self.public_amqp_urls:
            return split_urls(self.public_amqp_urls)
        if self.amqp_urls and self.public_amqp_url == self.amqp_url:
            return self.broker_urls
        return [self.public_amqp_url]

    @field_validator("amqp_urls", "public_amqp_urls")
    @classmethod
    def _urls_are_amqp(cls, text: str) -> str:
        for url in split_urls(text):
            if not url.startswith(("amqp://", "amqps://")):
                raise PydanticCustomError(
                    "invalid_value",
                    "must be amqp:// or amqps:// URLs separated by commas (a comma in a "
                    "password is written %2C)",
                )
        return text

    @property
    def amqp_tls(self) -> TlsFiles:
        """The TLS files of the service's own RabbitMQ connections (used for ``amqps://``)."""
        return TlsFiles(self.amqp_ca_file, self.amqp_cert_file, self.amqp_key_file)

    @model_validator(mode="before")
    @classmethod
    def _public_url_defaults_to_amqp_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("public_amqp_url"):
            amqp_url = data.get("amqp_url", DEFAULT_AMQP_URL)
            if isinstance(amqp_url, str):  # else amqp_url's own error says it
                return {**data, "public_amqp_url": amqp_url}
        return data

    @field_validator("amqp_prefix")
    @classmethod
    def _prefix_is_one_word(cls, prefix: str) -> str:
        if not prefix or any(c in prefix for c in " #*"):
            raise PydanticCustomError(
                "invalid_value", "must be a non-empty word without spaces, '#' or '*'"
            )
        return prefix

    @model_validator(mode="after")
    def _tls_pair(self) -> ServiceConfig:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise PydanticCustomError(
                "conflict",
                "HTTPS needs both tls_cert and tls_key (--tls-cert/--tls-key, OUTPOST_TLS_CERT/"
                f"OUTPOST_TLS_KEY); got certificate {self.tls_cert!r}, key {self.tls_key!r}",
            )
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _explained(
        cls, data: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        """Problems as one :class:`ConfigurationError` (it is not a ``ValueError``, so pydantic
        lets it through instead of wrapping it); declared last, so it sees every check's
        problems."""
        try:
            return handler(data)
        except ValidationError as exc:
            from_env = (info.context or {}).get("environment", set())
            message = "; ".join(_explain(error, from_env) for error in exc.errors())
            raise ConfigurationError(message) from None

    @classmethod
    def from_env(cls, **overrides: Any) -> ServiceConfig:
        """Defaults, then ``OUTPOST_*`` environment variables, then non-None ``overrides``."""
        environment = {
            name: os.environ[env_variable(name)]
            for name in cls.model_fields
            if os.environ.get(env_variable(name))
        }
        explicit = {name: value for name, value in overrides.items() if value is not None}
        from_env = set(environment) - set(explicit)
        return cls.model_validate({**environment, **explicit}, context={"environment": from_env})

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], *, use_env: bool = True) -> ServiceConfig:
        """Build from a mapping of field names (lower or upper case, like Flask's config)."""
        values = {key.lower(): value for key, value in mapping.items()}
        return cls.from_env(**values) if use_env else cls(**values)

    def replace(self, **changes: Any) -> ServiceConfig:
        """A copy with ``changes``, checked like any other configuration."""
        return type(self).model_validate({**self.model_dump(), **changes})


#: ``broker_auth`` values (docs/SECURITY.md).
BROKER_AUTH_MODES = choices(ServiceConfig.model_fields["broker_auth"])
#: ``queue_type`` values (docs/RELIABILITY.md).
QUEUE_TYPES = choices(ServiceConfig.model_fields["queue_type"])

_NEEDS = {
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "greater_than": "must be positive",
    "greater_than_equal": "must be 0 or positive",
    "string_type": "must be text",
}


def _explain(error: ErrorDetails, from_env: set[str]) -> str:
    """One problem: the setting (with its variable if the value came from the environment),
    what it must be and the value."""
    if not error["loc"]:  # a check across settings: its message says it all
        return error["msg"]
    name = str(error["loc"][0])
    kind, value = error["type"], error["input"]
    if kind == "extra_forbidden":
        known = sorted(ServiceConfig.model_fields)
        return (
            f"unknown service setting {name!r}{did_you_mean(name, known)}; known settings: {known}"
        )
    where = f"{name} (env {env_variable(name)})" if name in from_env else name
    if kind == "literal_error":
        allowed = ", ".join(choices(ServiceConfig.model_fields[name]))
        return f"{where} must be one of {allowed}, got {shown(value)}"
    return f"{where} {_NEEDS.get(kind, error['msg'])}, got {shown(value)}"
