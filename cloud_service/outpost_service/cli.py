"""``outpost-service``: run the Outpost cloud service and manage its users.

Every command reads the same settings: options first, then ``OUTPOST_DATABASE_URL``,
``OUTPOST_AMQP_URL``, ``OUTPOST_PUBLIC_AMQP_URL``, ``OUTPOST_AMQP_PREFIX``, then defaults (a
SQLite file under ``OUTPOST_HOME``, RabbitMQ on ``127.0.0.1:5672`` as guest).  Options that may
carry a password also take ``@FILE`` (the value is read from FILE): a password typed on the
command line is visible to every user of the machine in ``ps``, and gets a warning.  TLS settings
(``--tls-cert``/``--tls-key``, ``--amqp-ca-file`` ...) are described in docs/SECURITY.md.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from outpost.errors import OutpostError
from outpost.protocol.private_files import PRIVATE_UMASK
from outpost.runtime.cli import secret_callback
from outpost_service.config import BROKER_AUTH_MODES, QUEUE_TYPES, ServiceConfig
from outpost_service.store import Database, redact
from outpost_service.store.users import (
    check_scopes,
    get_or_create_user,
    issue_token,
    revoke_token,
)

#: Appended to the help of every option that may carry a password.
_SECRET_HELP = "; with a password prefer the env variable or @FILE (command lines show in ps)"


def _setting(
    flag: str,
    what: str,
    default: str | None = None,
    *,
    kind: click.ParamType | None = None,
    metavar: str | None = None,
    secret: bool = False,
    env: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """An option for a service setting that the environment may also give: the variable is
    named after the flag (``--queue-type``: ``OUTPOST_QUEUE_TYPE``) unless ``env`` says,
    and the help says it with the default.  The command gets the value under the setting's
    name, for ``ServiceConfig.from_env(**settings)``.  A ``secret`` option (a URL that may hold a
    password) also takes ``@FILE`` and warns about a literal password."""
    env = env or "OUTPOST_" + flag.lstrip("-").replace("-", "_").upper()
    where = f"env {env}" if default is None else f"env {env}; default: {default}"
    return click.option(
        flag,
        type=kind,
        metavar=metavar,
        callback=secret_callback(env, url=True) if secret else None,
        help=f"{what} [{where}]" + (_SECRET_HELP if secret else ""),
    )


_database_option = _setting(
    "--database-url",
    "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB",
    "sqlite under $OUTPOST_HOME/service/",
    metavar="URL|@FILE",
    secret=True,
)

#: The options that reach RabbitMQ, in the order --help shows them.
_AMQP_OPTIONS = (
    _setting(
        "--amqp-url",
        "RabbitMQ URL",
        "amqp://guest:guest@127.0.0.1:5672/",
        metavar="URL|@FILE",
        secret=True,
    ),
    _setting(
        "--public-amqp-url",
        "broker URL handed to endpoints, if they reach it at another address",
        "--amqp-url",
        metavar="URL|@FILE",
        secret=True,
    ),
    _setting("--amqp-prefix", "prefix of every exchange and queue", "outpost", metavar="PREFIX"),
    _setting(
        "--amqp-ca-file",
        "CA bundle (PEM) that signed RabbitMQ's certificate, for amqps:// URLs",
        "the system store",
        metavar="FILE",
    ),
    _setting(
        "--amqp-cert-file",
        "client certificate (PEM) shown to a broker that verifies peers",
        metavar="FILE",
    ),
    _setting("--amqp-key-file", "... and its PEM key", metavar="FILE"),
)


def _amqp_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_AMQP_OPTIONS):
        command = option(command)
    return command


def _friendly(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn Outpost errors into one clear line and exit status 1 instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except OutpostError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="log debug messages")
def main(verbose: bool) -> None:
    """Run the Outpost cloud service and manage its users.

    \b
    Quick start (one machine, SQLite, local RabbitMQ):
      outpost-service create-user alice      # prints token: op_...
      outpost-service serve --port 8000      # API + result ingest
    Then, on the laptop: OUTPOST_URL=http://HOST:8000 OUTPOST_TOKEN=op_... outpost ...
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pika").setLevel(logging.WARNING)
    # The database and everything else we create hold secrets: private to this user
    # (docs/SECURITY.md, "Files at rest").  Restored when the command ends (matters only when
    # the CLI is invoked in-process, as tests do).
    previous = os.umask(PRIVATE_UMASK)
    click.get_current_context().call_on_close(lambda: os.umask(previous))


_BROKER_AUTH = click.Choice(BROKER_AUTH_MODES)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="port to listen on; 0 picks a free one (the real port is printed)",
)
@_database_option
@_amqp_options
@click.option(
    "--no-ingest",
    is_flag=True,
    help="do not consume results in this process (run `outpost-service ingest` elsewhere); "
    "with PostgreSQL its results wake this process's long-polls through RabbitMQ, with SQLite "
    "long-polls re-check the database four times a second",
)
@click.option(
    "--threads",
    default=32,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="request threads for ordinary requests; waiting long-polls get --longpoll-slots "
    "threads more",
)
@_setting(
    "--longpoll-slots",
    "result long-polls that may wait at once, each on a thread of its own",
    "1000",
    kind=click.IntRange(1),
)
@_setting(
    "--longpoll-per-user",
    "waiting long-polls one user may hold; more get 429 with Retry-After",
    "16",
    kind=click.IntRange(1),
)
@_setting(
    "--connection-limit",
    "client connections open at once (plain HTTP server)",
    "2000",
    kind=click.IntRange(1),
)
@_setting(
    "--channel-timeout",
    "seconds a connection may stay silent (mid-request or between requests) before it is closed",
    "30",
    kind=click.FloatRange(min=0, min_open=True),
)
@_setting(
    "--broker-auth",
    "per-endpoint: one RabbitMQ user per endpoint, made through the management API; "
    "shared: endpoints get the service's broker URL (docs/SECURITY.md)",
    "per-endpoint",
    kind=_BROKER_AUTH,
)
@_setting(
    "--management-url",
    "RabbitMQ management API, http(s)://[USER:PASSWORD@]HOST:PORT/",
    "the --amqp-url host, port + 10000",
    metavar="URL|@FILE",
    secret=True,
    env="OUTPOST_AMQP_MANAGEMENT_URL",
)
@_setting(
    "--queue-type",
    "RabbitMQ queue type of the queues the service declares; an existing queue keeps its "
    "type (docs/RELIABILITY.md)",
    "classic",
    kind=click.Choice(QUEUE_TYPES),
)
@_setting(
    "--tls-cert",
    "serve HTTPS with this PEM certificate (chain); needs --tls-key",
    "plain HTTP, e.g. behind a TLS proxy",
    metavar="FILE",
)
@_setting("--tls-key", "the certificate's PEM private key, unencrypted", metavar="FILE")
@_friendly
def serve(host: str, port: int, no_ingest: bool, threads: int, **settings: Any) -> None:
    """Serve the HTTP API (and, unless --no-ingest, the result ingest).

    Prints `outpost-service listening on http://HOST:PORT` (https:// with --tls-cert and
    --tls-key) once it accepts connections; SIGTERM or Ctrl-C stops it cleanly.
    """
    from outpost_service.server import serve as run_server

    config = ServiceConfig.from_env(**settings)
    run_server(config, host=host, port=port, threads=threads, ingest=not no_ingest)


@main.command()
@_database_option
@_amqp_options
@_friendly
def ingest(**settings: Any) -> None:
    """Consume results and heartbeats into the database (pairs with `serve --no-ingest`).

    Run as many as you like against the same database and broker; SIGTERM stops it cleanly.
    """
    from outpost_service.metrics.exporter import serve_metrics
    from outpost_service.server import run_ingest

    config = ServiceConfig.from_env(**settings)
    serve_metrics(config)  # /metrics of this process, if metrics_listen is set
    run_ingest(config)


@main.command("create-user")
@click.argument("name")
@_database_option
@click.option("--json", "as_json", is_flag=True, help='print {"token": ...} instead')
@click.option(
    "--expires-days",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="the token stops working after this many days [default: never]",
)
@click.option(
    "--scope",
    "scope",
    default=None,
    help="comma-separated rights of the token: read, submit, manage [default: all three]",
)
@_friendly
def create_user(
    name: str,
    database_url: str | None,
    as_json: bool,
    expires_days: float | None,
    scope: str | None,
) -> None:
    """Create user NAME (if new) and print a new API token for them.

    The token is shown only once (the service stores its hash). Running this again for the
    same NAME issues an additional token; old ones keep working until revoked.
    """
    from outpost_service.validation import NAME_PATTERN

    if not NAME_PATTERN.fullmatch(name):
        raise click.BadParameter(
            "use 1-64 letters, digits, '_', '.', '-', starting with a letter or digit",
            param_hint="NAME",
        )
    scopes = None
    if scope is not None:
        try:
            scopes = check_scopes(scope.split(","))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--scope") from None
    database = _database(database_url)
    with database.write() as conn:
        user = get_or_create_user(conn, name)
        token = issue_token(
            conn,
            user,
            expires_in=None if expires_days is None else expires_days * 86400,
            scopes=scopes,
        )
    database.dispose()
    click.echo(json.dumps({"user": name, "token": token}) if as_json else f"token: {token}")


@main.command("revoke-token")
@click.argument("token", callback=secret_callback(None, url=False))
@_database_option
@_friendly
def revoke(token: str, database_url: str | None) -> None:
    """Revoke TOKEN: requests with it get 401 from now on.

    TOKEN may be @FILE, a file holding the token: a token typed on the command line is
    visible to every user of the machine (ps).
    """
    database = _database(database_url)
    with database.write() as conn:
        revoked = revoke_token(conn, token)
    database.dispose()
    if not revoked:
        raise click.ClickException("no such active token (unknown, or already revoked)")
    click.echo("token revoked")


@main.command("revoke-user")
@click.argument("name")
@_database_option
@_amqp_options
@_setting(
    "--management-url",
    "RabbitMQ management API, as for serve",
    metavar="URL|@FILE",
    secret=True,
    env="OUTPOST_AMQP_MANAGEMENT_URL",
)
@_setting("--broker-auth", "as for serve", "per-endpoint", kind=_BROKER_AUTH)
@_friendly
def revoke_user_command(name: str, **settings: Any) -> None:
    """Revoke user NAME: every token of theirs, and their endpoints' broker access.

    Their API requests get 401 from now on; their endpoints' RabbitMQ users are deleted and
    open connections closed, so a running endpoint of theirs takes no more tasks (queued
    tasks stay queued). Safe to run again (e.g. after a broker error).
    """
    from outpost_service.revocation import revoke_user

    config = ServiceConfig.from_env(**settings)
    database = Database(config.database_url)
    database.ensure_schema()
    try:
        outcome = revoke_user(config, database, name)
    finally:
        database.dispose()
    click.echo(f"user {name}: {outcome.tokens_revoked} active token(s) revoked")
    if outcome.shared_broker_login:
        click.echo(
            "warning: broker_auth is 'shared': endpoints use the service's own broker login, "
            "which cannot be cut off for one user; rotate it to stop their running endpoints",
            err=True,
        )
    else:
        click.echo(
            f"user {name}: {len(outcome.endpoints)} endpoint(s) cut off the broker (broker "
            "users deleted, connections closed)"
        )


@main.command("init-db")
@_database_option
@_friendly
def init_db(database_url: str | None) -> None:
    """Create the database schema (serve and create-user also do this when needed)."""
    database = _database(database_url)
    database.dispose()
    click.echo(f"database ready: {redact(database.url)}")


def _database(database_url: str | None) -> Database:
    config = ServiceConfig.from_env(database_url=database_url)
    database = Database(config.database_url)
    database.ensure_schema()
    return database


if __name__ == "__main__":  # pragma: no cover
    main()
