"""Fixtures for the endpoint tests: a private AMQP topology on the real RabbitMQ.

The service is not needed: each test declares the ARCHITECTURE.md topology itself under a unique
prefix (``test-<hex>``), runs the endpoint's real link + engine against it, reads what the
endpoint publishes from ``P.ingest``, and deletes everything afterwards.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest

from outpost.protocol import (
    CancelRequest,
    EndpointStatus,
    ResultEnvelope,
    TaskEnvelope,
    function_id_for,
    serialize,
)
from outpost_endpoint.amqp import AmqpSettings
from outpost_endpoint.engine import ProcessPoolEngine
from outpost_endpoint.service import EndpointService

from ..recipes import missing

AMQP_URL = os.environ.get("OUTPOST_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


@dataclass
class Delivery:
    routing_key: str
    kind: str
    body: bytes
    headers: dict[str, Any]


class Topology:
    """One endpoint's queues on a private prefix, plus helpers to talk to them."""

    def __init__(self, prefix: str, endpoint_id: str) -> None:
        self.prefix = prefix
        self.endpoint_id = endpoint_id
        self.connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.task_queue = f"{prefix}.tasks.{endpoint_id}"
        self.ingest = f"{prefix}.ingest"
        self.dead = f"{prefix}.dead"
        self._kept: dict[str, list[Delivery]] = {}

    def declare(self) -> None:
        ch, p = self.channel, self.prefix
        ch.exchange_declare(f"{p}.tasks", "direct", durable=True)
        ch.exchange_declare(f"{p}.results", "topic", durable=True)
        ch.exchange_declare(f"{p}.dead", "fanout", durable=True)
        ch.queue_declare(self.dead, durable=True)
        ch.queue_bind(self.dead, f"{p}.dead")
        ch.queue_declare(self.ingest, durable=True)
        ch.queue_bind(self.ingest, f"{p}.results", "#")
        ch.queue_declare(
            self.task_queue, durable=True, arguments={"x-dead-letter-exchange": f"{p}.dead"}
        )
        ch.queue_bind(self.task_queue, f"{p}.tasks", self.endpoint_id)

    def delete(self) -> None:
        for queue in (self.task_queue, self.ingest, self.dead):
            self.channel.queue_delete(queue)
        for exchange in ("tasks", "results", "dead"):
            self.channel.exchange_delete(f"{self.prefix}.{exchange}")
        self.connection.close()

    @property
    def settings(self) -> AmqpSettings:
        return AmqpSettings(
            url=AMQP_URL,
            task_exchange=f"{self.prefix}.tasks",
            task_queue=self.task_queue,
            result_exchange=f"{self.prefix}.results",
            result_routing_key=f"{self.endpoint_id}.result",
            status_routing_key=f"{self.endpoint_id}.status",
            heartbeat_interval=1.0,
        )

    def registration(self) -> dict[str, Any]:
        """What the service's ``POST /v1/endpoints`` answers for this topology."""
        s = self.settings
        return {
            "endpoint_id": self.endpoint_id,
            "amqp": {
                "url": s.url,
                "task_exchange": s.task_exchange,
                "task_queue": s.task_queue,
                "result_exchange": s.result_exchange,
                "result_routing_key": s.result_routing_key,
                "status_routing_key": s.status_routing_key,
                "heartbeat_interval": s.heartbeat_interval,
            },
        }

    def publish(self, body: bytes, kind: str = "task") -> None:
        self.channel.basic_publish(
            f"{self.prefix}.tasks",
            self.endpoint_id,
            body,
            pika.BasicProperties(delivery_mode=2, content_type="application/json", type=kind),
        )

    def task(
        self,
        fn: Callable[..., Any],
        *args: Any,
        spec: dict[str, Any] | None = None,
        endpoint_id: str | None = None,
        **kwargs: Any,
    ) -> TaskEnvelope:
        """Publish a task calling ``fn(*args, **kwargs)``; returns its envelope."""
        function = serialize(fn)
        envelope = TaskEnvelope(
            task_id=str(uuid.uuid4()),
            function_id=function_id_for(function),
            function=function,
            args=serialize((args, kwargs)),
            endpoint_id=endpoint_id or self.endpoint_id,
            resource_specification=spec or {},
        )
        self.publish(envelope.to_bytes())
        return envelope

    def cancel(self, *task_ids: str) -> None:
        request = CancelRequest(endpoint_id=self.endpoint_id, task_ids=list(task_ids))
        self.publish(request.to_bytes(), "cancel")

    def next_message(
        self, queue: str, accept: Callable[[Delivery], bool], timeout: float = 60
    ) -> Delivery:
        """Consume ``queue`` until a message ``accept`` likes arrives; others are kept for later
        calls (so waiting for one result never loses another)."""
        kept = self._kept.setdefault(queue, [])
        for found in kept:
            if accept(found):
                kept.remove(found)
                return found
        deadline = time.monotonic() + timeout
        try:
            for method, props, body in self.channel.consume(queue, inactivity_timeout=0.5):
                if method is not None:
                    self.channel.basic_ack(method.delivery_tag)
                    found = Delivery(
                        method.routing_key, props.type or "", body, props.headers or {}
                    )
                    if accept(found):
                        return found
                    if found.kind != "status":  # heartbeats pile up; nobody needs old ones
                        kept.append(found)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no matching message on {queue} within {timeout} s")
        finally:
            self.channel.cancel()
        raise AssertionError("unreachable")

    def result(self, task_id: str, timeout: float = 60) -> ResultEnvelope:
        found = self.next_message(
            self.ingest,
            lambda d: d.kind == "result" and ResultEnvelope.from_bytes(d.body).task_id == task_id,
            timeout,
        )
        assert found.routing_key == f"{self.endpoint_id}.result"
        return ResultEnvelope.from_bytes(found.body)

    def status(
        self, accept: Callable[[EndpointStatus], bool], timeout: float = 60
    ) -> EndpointStatus:
        found = self.next_message(
            self.ingest,
            lambda d: d.kind == "status" and accept(EndpointStatus.from_bytes(d.body)),
            timeout,
        )
        assert found.routing_key == f"{self.endpoint_id}.status"
        return EndpointStatus.from_bytes(found.body)

    def dead_letter(self, timeout: float = 60) -> Delivery:
        return self.next_message(self.dead, lambda d: True, timeout)

    def waiting(self) -> int:
        """Messages ready in the task queue (unacked ones are not counted)."""
        return self.channel.queue_declare(self.task_queue, passive=True).method.message_count


def drop_connections(endpoint_id: str) -> int:
    """Force-close this endpoint's RabbitMQ connections, as a broker restart would."""
    listing = subprocess.run(
        ["rabbitmqctl", "list_connections", "pid", "client_properties", "--quiet"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    pids = [line.split("\t", 1)[0] for line in listing.stdout.splitlines() if endpoint_id in line]
    for pid in pids:
        subprocess.run(
            ["rabbitmqctl", "close_connection", pid, "test: simulated broker outage"],
            capture_output=True, timeout=60, check=True,
        )  # fmt: skip
    return len(pids)


@pytest.fixture(scope="session")
def rabbitmq() -> str:
    try:
        pika.BlockingConnection(pika.URLParameters(AMQP_URL)).close()
    except pika.exceptions.AMQPError as exc:
        missing(f"RabbitMQ at {AMQP_URL} ({exc!r})", "start it with `bash scripts/bootstrap.sh`")
    return AMQP_URL


@pytest.fixture
def topology(rabbitmq: str) -> Iterator[Topology]:
    topo = Topology(f"test-{secrets.token_hex(4)}", str(uuid.uuid4()))
    topo.declare()
    yield topo
    topo.delete()


@pytest.fixture
def make_service(topology: Topology, tmp_path: Path) -> Iterator[Callable[..., EndpointService]]:
    """Start in-process endpoints (engine + AMQP link) on the topology; stopped at the end.
    They share one task journal, as restarts of one endpoint do."""
    started: list[EndpointService] = []

    def make(workers: int = 2, prefetch: int = 4) -> EndpointService:
        service = EndpointService(
            topology.endpoint_id,
            topology.settings,
            ProcessPoolEngine(workers),
            prefetch=prefetch,
            heartbeat_interval=0.5,
            journal_path=tmp_path / "journal.db",
        )
        service.start()
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop(grace=5)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private OUTPOST_HOME with no service settings leaking in from the environment."""
    monkeypatch.setenv("OUTPOST_HOME", str(tmp_path / "outpost"))
    for var in ("OUTPOST_URL", "OUTPOST_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "outpost"
