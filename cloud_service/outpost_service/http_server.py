"""The WSGI server under the service: waitress for plain HTTP, cheroot when TLS is configured.

Why two servers behind one small interface:

* waitress (plain HTTP) is what every benchmark and reliability test of this repository
  measured.  Its asyncore front end reads whole requests and writes whole responses itself,
  so a slow or stalled client never holds a request thread -- the right server behind a
  TLS-terminating reverse proxy, and the default.  It has no TLS.
* cheroot (CherryPy's server: maintained, pure Python, TLS through the standard :mod:`ssl`)
  serves HTTPS when ``--tls-cert``/``--tls-key`` are given.  It runs the same WSGI app with the
  same fixed pool of request threads (each waiting long-poll holds one for up to a minute).
  Its one weakness: the TLS handshake runs on the accepting thread, so a client that connects
  and sends nothing delays other new connections; :data:`HANDSHAKE_TIMEOUT` bounds that.  An
  internet-facing service with hostile clients is better behind a proxy (docs/SECURITY.md).

Neither may be starved by one client (docs/SECURITY.md, "fair service"): waiting long-polls
take at most the slots of longpoll.py, threads added on top of ``--threads``; waitress accepts up
to ``connection_limit`` connections (each a file descriptor, no thread, while it trickles in its
request) and closes any silent for ``channel_timeout`` seconds; cheroot uses the same timeout
for each read, but reads a request on a request thread, so half-sent requests over TLS can each
hold a thread that long -- another reason for a proxy in front of a hostile network.

The production runner for more than one process is *N waitress processes*, not gunicorn:
``outpost-service serve --no-ingest`` once per port (or container), each supervised by the init
system (systemd restarts it, compose's ``restart:``), HAProxy in front health-checking each with
``GET /health``, and ``outpost-service ingest`` process(es) beside them (deployment/README.md,
deployment/compose.yaml; tests/scaleout/ runs exactly this).  Once ingest left ``serve``,
gunicorn (``gthread`` workers) would have fitted, but it buys nothing here and costs twice:
its workers read each request on a pool thread, so a slow or half-sent request holds a thread
-- the starvation waitress's asyncore front end avoids -- and its master's restart of a dead
worker is what the supervisor already does for a process, while one process per port lets the
balancer see and route around each one.  Every API process is stateless (docs/ARCHITECTURE.md,
"Scale-out"): add processes for more request threads, long-poll slots and CPU.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, Protocol

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter
from waitress.server import create_server

from outpost.protocol.tls import server_context

#: Seconds a new HTTPS connection may take to finish its TLS handshake (see module docstring).
HANDSHAKE_TIMEOUT = 5.0
#: Seconds a connection may stay idle (between keep-alive requests, or inside one request),
#: unless ``channel_timeout`` says otherwise (config ``channel_timeout``).
IDLE_TIMEOUT = 30.0


class HttpServer(Protocol):
    """A bound server: ``url`` is where it listens (the real port when 0 was asked for)."""

    url: str

    def serve(self) -> None:
        """Serve until SystemExit or KeyboardInterrupt is raised in this (the main) thread."""

    def close(self) -> None:
        """Stop accepting, let running requests finish (briefly), release the socket."""


def build_server(
    app: Any,
    *,
    host: str,
    port: int,
    threads: int,
    tls_cert: str = "",
    tls_key: str = "",
    connection_limit: int = 1000,
    channel_timeout: float = IDLE_TIMEOUT,
) -> HttpServer:
    """Bind ``host:port`` and return the server for ``app``: HTTPS with ``tls_cert`` and
    ``tls_key`` (unreadable or mismatched files raise ConfigurationError), else HTTP."""
    _allow_descriptors(connection_limit + threads + 64)
    listen = _Listen(host, port, threads, connection_limit, channel_timeout)
    if tls_cert or tls_key:
        return _CherootServer(app, listen, tls_cert, tls_key)
    return _WaitressServer(app, listen)


@dataclass(frozen=True)
class _Listen:
    """Where and how either server listens (see :func:`build_server`)."""

    host: str
    port: int
    threads: int
    connection_limit: int
    channel_timeout: float


def _allow_descriptors(needed: int) -> None:
    """Raise this process' soft limit on open files towards ``needed`` (up to the hard limit),
    so ``connection_limit`` connections can really be open at once."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class _WaitressServer:
    def __init__(self, app: Any, listen: _Listen) -> None:
        self._server: Any = create_server(
            app,
            host=listen.host,
            port=listen.port,
            threads=listen.threads,
            connection_limit=listen.connection_limit,
            channel_timeout=listen.channel_timeout,
            # How often silent connections are looked for: often enough that one is closed
            # within about 1.5 x channel_timeout.
            cleanup_interval=max(1.0, min(30.0, listen.channel_timeout / 2)),
            ident="outpost-service",
            # poll(2), not select(2): more than 1,024 open connections (a thousand waiting
            # long-polls and the other users' requests) would not fit select's descriptor set.
            asyncore_use_poll=True,
        )
        self.url = f"http://{_host(self._server.effective_host)}:{self._server.effective_port}"

    def serve(self) -> None:
        self._server.run()  # returns after SystemExit/KeyboardInterrupt, having stopped threads

    def close(self) -> None:
        self._server.close()


class _HandshakeBounded(BuiltinSSLAdapter):
    """cheroot's adapter with a short timeout while the handshake runs (cheroot sets its own
    connection timeout again right after)."""

    def wrap(self, sock: socket.socket) -> Any:
        sock.settimeout(HANDSHAKE_TIMEOUT)
        return super().wrap(sock)


class _CherootServer:
    def __init__(self, app: Any, listen: _Listen, tls_cert: str, tls_key: str) -> None:
        context = server_context(tls_cert, tls_key)  # clear errors before cheroot's own
        self._server = wsgi.Server(
            (listen.host, listen.port),
            app,
            numthreads=listen.threads,
            max=listen.threads,
            server_name="outpost-service",
            timeout=int(max(1.0, listen.channel_timeout)),
            request_queue_size=128,
        )
        adapter = _HandshakeBounded(tls_cert, tls_key)
        adapter.context = context
        self._server.ssl_adapter = adapter
        self._server.prepare()  # binds now, so the real port is known
        bound_host, bound_port = self._server.bind_addr[:2]
        self.url = f"https://{_host(bound_host)}:{bound_port}"

    def serve(self) -> None:
        try:
            self._server.serve()
        finally:
            self._server.stop()

    def close(self) -> None:
        self._server.stop()


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
