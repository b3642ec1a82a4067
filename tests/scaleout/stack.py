"""A scaled-out service as real processes: HAProxy → N ``serve --no-ingest`` API processes, M
``outpost-service ingest`` processes, one PostgreSQL database, one broker.

The same shape as deployment/compose.yaml.  Every process gets the same database URL and AMQP
prefix (a unique database and prefix per stack, so parallel runs never meet); the broker is
whatever :class:`Broker` the caller passes -- the machine's RabbitMQ (:class:`SingleBroker`), or
a cluster fixture with several URLs and nodes to kill.

API processes are started one after the other (the first makes the schema and the deployment's
secrets; the others read them), ingest processes after them.  Any of them can be killed with
SIGKILL and started again on the same settings (:meth:`ScaleStack.kill_api`,
:meth:`ScaleStack.restart_api`, ...).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..e2e.stack import AMQP_URL, RunningService, cli, start_service
from ..fixtures.haproxy import HAProxy


class Broker(Protocol):
    """What the stack needs of a broker: its AMQP URLs (one per node) and a way to kill a
    node (a cluster fixture has one; a single node has nothing it can kill and survive)."""

    urls: list[str]

    def kill(self, node: int) -> None: ...


@dataclass
class SingleBroker:
    """The machine's RabbitMQ (``OUTPOST_TEST_AMQP_URL``): one URL, no node to kill."""

    urls: list[str] = field(default_factory=lambda: [AMQP_URL])

    def kill(self, node: int) -> None:
        raise NotImplementedError("a single RabbitMQ node cannot be killed and survived")


def amqp_setting(broker: Broker) -> str:
    """The value of ``OUTPOST_AMQP_URL`` for ``broker``.

    Today one URL (the first node's); once the service takes a list of broker URLs (issue 14,
    the RabbitMQ cluster), this is where the whole list is passed."""
    return broker.urls[0]


@dataclass
class IngestProcess:
    process: subprocess.Popen[str]
    output: list[str]


@dataclass
class ScaleStack:
    """The running processes; ``url`` is HAProxy's (what clients and endpoints are given)."""

    home: Path
    database_url: str
    amqp_url: str
    prefix: str
    token: str
    haproxy: HAProxy
    apis: list[RunningService]
    ingests: list[IngestProcess]
    endpoint_ids: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.haproxy.url

    def service(self) -> RunningService:
        """A :class:`RunningService` that addresses the stack through HAProxy (what the e2e
        helpers -- ``make_endpoint``, ``Campaign`` -- take)."""
        first = self.apis[0]
        return RunningService(
            url=self.url,
            token=self.token,
            home=self.home,
            database_url=self.database_url,
            amqp_prefix=self.prefix,
            process=first.process,
            output=first.output,
            endpoint_ids=self.endpoint_ids,
        )

    # ------------------------------------------------------------------ faults
    def kill_api(self, index: int) -> None:
        """SIGKILL API process ``index`` (HAProxy's health check takes it out)."""
        kill(self.apis[index].process)

    def restart_api(self, index: int) -> None:
        """Start API process ``index`` again on its old port, and wait until HAProxy sends it
        requests again."""
        old = self.apis[index]
        port = int(old.url.rsplit(":", 1)[1])
        self.apis[index] = start_api(self, port=port)
        self.haproxy.wait_for(
            lambda: self.haproxy.up_servers() == len(self.apis), 60, "the API back in HAProxy"
        )

    def kill_ingest(self, index: int) -> None:
        kill(self.ingests[index].process)

    def restart_ingest(self, index: int) -> None:
        self.ingests[index] = start_ingest(self)

    def stop(self) -> None:
        self.haproxy.stop()
        for running in [api.process for api in self.apis] + [i.process for i in self.ingests]:
            if running.poll() is None:
                running.terminate()
        for running in [api.process for api in self.apis] + [i.process for i in self.ingests]:
            try:
                running.wait(30)
            except subprocess.TimeoutExpired:
                running.kill()
                running.wait(10)


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(30)


def _env(stack: ScaleStack) -> dict[str, str]:
    env = dict(
        os.environ,
        OUTPOST_HOME=str(stack.home),
        PYTHONUNBUFFERED="1",
        # Secrets from the environment, not argv (ps shows argv to every user).
        OUTPOST_AMQP_URL=stack.amqp_url,
        OUTPOST_DATABASE_URL=stack.database_url,
        OUTPOST_AMQP_PREFIX=stack.prefix,
    )
    for var in ("OUTPOST_URL", "OUTPOST_TOKEN"):
        env.pop(var, None)
    return env


def start_api(stack: ScaleStack, *, port: int = 0, user: str | None = None) -> RunningService:
    """One ``serve --no-ingest`` of the stack (``user``: create it and its token)."""
    return start_service(
        stack.home,
        stack.database_url,
        user,
        amqp_url=stack.amqp_url,
        prefix=stack.prefix,
        port=port,
        extra=("--no-ingest",),
    )


def start_ingest(stack: ScaleStack) -> IngestProcess:
    """One ``outpost-service ingest`` of the stack; returns once it consumes."""
    process = subprocess.Popen(
        [cli("outpost-service"), "ingest"],
        env=_env(stack),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    consuming = threading.Event()

    def pump() -> None:  # keep reading its log, so a full pipe never blocks it
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if "ingest consuming" in line:
                consuming.set()
        consuming.set()

    threading.Thread(target=pump, daemon=True).start()
    if not consuming.wait(60) or process.poll() is not None:
        process.kill()
        raise RuntimeError("outpost-service ingest did not start:\n" + "".join(output))
    return IngestProcess(process, output)


def start_stack(
    home: Path, database_url: str, broker: Broker, *, apis: int = 2, ingests: int = 2
) -> ScaleStack:
    """Start ``apis`` API processes, ``ingests`` ingest processes and HAProxy in front of the
    APIs; user ``alice`` is created (``stack.token``).  On failure, what started is stopped."""
    stack = ScaleStack(
        home=home,
        database_url=database_url,
        amqp_url=amqp_setting(broker),
        prefix=f"scale-{secrets.token_hex(4)}",
        token="",
        haproxy=HAProxy(home / "haproxy", []),
        apis=[],
        ingests=[],
    )
    try:
        first = start_api(stack, user="alice")
        stack.token = first.token
        stack.apis.append(first)
        stack.apis += [start_api(stack) for _ in range(apis - 1)]
        stack.ingests += [start_ingest(stack) for _ in range(ingests)]
        stack.haproxy = HAProxy(home / "haproxy", [api.url for api in stack.apis])
        stack.haproxy.start()
    except BaseException:
        stack.stop()
        raise
    return stack
