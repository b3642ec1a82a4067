"""Running one endpoint in the current process: register, connect, serve until signalled.

Both ``start --foreground`` and the daemon (after :mod:`outpost_endpoint.daemon` detached it)
end up in :func:`run_endpoint`.  Readiness and startup errors are reported through callbacks so
the daemon can pass them to the waiting ``start`` command over a pipe.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from outpost.errors import SealingError
from outpost.protocol.conventions import outpost_home
from outpost.protocol.private_files import describe, tighten
from outpost.protocol.sealing import key_fingerprint, load_or_create_key, public_key_text
from outpost.protocol.tls import TlsFiles
from outpost_endpoint import pidfile
from outpost_endpoint.amqp.connection import AmqpSettings
from outpost_endpoint.config import EndpointConfig, EngineConfig, load_config
from outpost_endpoint.engine.registry import build_engine
from outpost_endpoint.errors import AlreadyRunning, EndpointConnected, EndpointError
from outpost_endpoint.paths import EndpointPaths
from outpost_endpoint.results import HOSTNAME
from outpost_endpoint.sealed import SEALING_KEY_ENV
from outpost_endpoint.service import EndpointService
from outpost_endpoint.service_link import ServiceLink, pin_signing_key, resolve_access

log = logging.getLogger("outpost_endpoint")


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s [%(process)d %(threadName)s] %(name)s: %(message)s",
        force=True,
    )
    logging.getLogger("pika").setLevel(logging.WARNING)


def register(
    paths: EndpointPaths, config: EndpointConfig, *, force: bool = False
) -> tuple[str, AmqpSettings]:
    """Register with the service (re-attaching to the id in endpoint.json) and keep the id.

    The service refuses (409) while another instance of the endpoint heartbeats, since
    registering rotates the broker password and so cuts that instance off.  If the instance
    it names ran on this host and its process is gone (a daemon killed with -9 a moment ago),
    it is our dead predecessor and we register with force; anything else is refused unless
    ``force`` (``start --force``)."""
    access = resolve_access(paths, config.service_url, config.service_ca_file)
    known = paths.read_info()
    sealing_key = load_or_create_key(paths.sealing_key)
    # Users compare this with what `outpost endpoints trust` shows (docs/SECURITY.md).
    log.info("sealing key fingerprint %s (%s)", key_fingerprint(sealing_key), paths.sealing_key)
    metadata: dict[str, Any] = {"sealing_public_key": public_key_text(sealing_key)}
    if config.allowed_functions is not None:  # shown to users; the daemon enforces it
        metadata["allowed_functions"] = config.allowed_functions
    link = ServiceLink(access)
    try:
        answer = link.register(paths.name, known.get("endpoint_id"), metadata, force=force)
    except EndpointConnected as exc:
        if not _predecessor_gone(exc.details):
            raise EndpointConnected(
                f"{exc}. Not starting a second instance of endpoint {paths.name!r}: pass "
                "--force to `outpost-endpoint start` to take over anyway",
                details=exc.details,
            ) from None
        log.warning(
            "the service still sees endpoint %s heartbeating from pid %s on this host, which is "
            "gone (killed?); registering with force",
            paths.name,
            exc.details.get("pid"),
        )
        answer = link.register(paths.name, known.get("endpoint_id"), metadata, force=True)
    endpoint_id = answer["endpoint_id"]
    settings = AmqpSettings.from_registration(
        answer["amqp"],
        url_override=config.amqp_urls or config.amqp_url,
        tls=TlsFiles(
            config.amqp_ca_file or "", config.amqp_cert_file or "", config.amqp_key_file or ""
        ),
    )
    settings = pin_signing_key(known, settings, paths.info, access.url)
    paths.write_info(
        {
            **known,
            "endpoint_id": endpoint_id,
            "name": paths.name,
            "service_url": access.url,
            "task_queue": settings.task_queue,
            "registered_at": time.time(),
            **(
                {"task_signing_key": settings.task_signing_key} if settings.task_signing_key else {}
            ),
        }
    )
    return endpoint_id, settings


def _predecessor_gone(details: dict[str, Any]) -> bool:
    """Whether the heartbeating instance the service named ran here and its process is gone."""
    pid = details.get("pid")
    return (
        details.get("hostname") == HOSTNAME
        and isinstance(pid, int)
        and pid != os.getpid()
        and not pidfile.is_alive(pid)
    )


def run_endpoint(
    paths: EndpointPaths,
    on_ready: Callable[[str], None],
    on_error: Callable[[str], None],
    *,
    force: bool = False,
) -> int:
    """Serve until SIGTERM/SIGINT, or until the endpoint cannot go on (RabbitMQ refuses its
    credentials: see :func:`~outpost_endpoint.amqp.connection.credentials_refused`); then
    the reason goes to ``failed.json`` for ``status``.  Returns the process exit status."""
    stop = threading.Event()
    fatal: list[str] = []

    def on_fatal(reason: str) -> None:
        if not fatal:
            fatal.append(reason)
        stop.set()

    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _SIGNALS}
    try:
        home = outpost_home()
        loose = tighten([home], recursive=True)  # what older versions left readable
        if loose:
            log.warning("%s", describe(loose, home))
        running = pidfile.read_pid(paths.pidfile)
        if running is not None and running != os.getpid():
            raise AlreadyRunning(f"endpoint {paths.name!r} is already running (pid {running})")
        pidfile.write_pid(paths.pidfile)
        config = load_config(paths.config)
        # Workers (children of this process) open sealed task arguments with this key.
        load_or_create_key(paths.sealing_key)
        os.environ[SEALING_KEY_ENV] = str(paths.sealing_key)
        engine = build_engine(config.engine, paths.root / "run")  # config errors first
        endpoint_id, settings = register(paths, config, force=force)
        service = EndpointService(
            endpoint_id,
            settings,
            engine,
            prefetch=config.prefetch_count,
            heartbeat_interval=config.heartbeat_interval,
            journal_path=paths.root / "journal.db",
            allowed_functions=config.allowed_functions,
            on_fatal=on_fatal,
        )
        log.info(
            "endpoint %s (%s): engine %s, prefetch %d; service %s; RabbitMQ %s",
            paths.name, endpoint_id, engine_summary(config.engine), config.prefetch_count,
            paths.read_info().get("service_url"), settings.shown(),
        )  # fmt: skip
        service.start()
    except (EndpointError, SealingError) as exc:
        log.error("endpoint %s did not start: %s", paths.name, exc)
        pidfile.remove_pid(paths.pidfile)
        on_error(str(exc))
        _restore(previous)
        return 1
    log.info("endpoint %s started: %s (pid %d)", paths.name, endpoint_id, os.getpid())
    paths.clear_failure()
    on_ready(endpoint_id)
    try:
        while not stop.wait(1.0):
            pass
        if fatal:
            log.error("endpoint %s stops: %s", paths.name, fatal[0])
            paths.record_failure(fatal[0])
        else:
            log.info("signal received; shutting down")
        service.stop(grace=config.shutdown_grace)
    finally:
        pidfile.remove_pid(paths.pidfile)
        _restore(previous)
    return 1 if fatal else 0


_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def engine_summary(engine: EngineConfig) -> str:
    """What the engine will run on, for the start-up log line (``max_workers`` means nothing
    to the high-throughput engine: its workers come per node of each block)."""
    if engine.type != "high-throughput":
        return f"{engine.type} ({engine.max_workers} workers)"
    provider = engine.provider
    per_node = (
        f"{len(engine.available_accelerators)} (one per accelerator)"
        if engine.available_accelerators
        else str(engine.max_workers_per_node or provider.cpus_per_node or "1 per core")
    )
    return (
        f"high-throughput (provider {provider.type}, launcher {provider.launcher.type}, "
        f"{provider.nodes_per_block} node(s) per block, blocks {provider.min_blocks}-"
        f"{provider.max_blocks}, walltime {provider.walltime}, workers per node {per_node}, "
        f"cpu_affinity {engine.cpu_affinity})"
    )


def _restore(previous: dict[Any, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
