"""Dashboard fixtures: the service tests' apps (real database, real RabbitMQ) for the
in-process tests, and the end-to-end stack (service and endpoint processes) for the browser."""

from tests.e2e.conftest import new_postgres_database
from tests.service.conftest import (
    amqp_prefix,
    app,
    client,
    database_url,
    make_app,
    postgres_database,
)

__all__ = [
    "amqp_prefix",
    "app",
    "client",
    "database_url",
    "make_app",
    "new_postgres_database",
    "postgres_database",
]
