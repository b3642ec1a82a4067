"""Simulated endpoints for the many-endpoints benchmark: one process, many endpoints.

``python -m benchmarks.sim_endpoints REGISTRATIONS.json`` reads the answers of ``POST
/v1/endpoints`` (one per endpoint, registered over HTTP by the caller, as ``outpost-endpoint
start`` does) and, for each endpoint, does on the wire what the real endpoint does:

* a **consumer connection** (its own broker user from the registration) with a channel whose
  prefetch is set, consuming the endpoint's task queue (acking whatever arrives: a simulated
  endpoint runs nothing, and the benchmark sends it nothing);
* a **publisher connection** with a channel in confirm mode, on which it sends an
  :class:`~outpost.protocol.EndpointStatus` heartbeat every ``heartbeat_interval`` seconds (the
  registration's), to the result exchange under ``<id>.status``, persistent JSON -- the real
  endpoint's ``ResultPublisher._send_status``, with a details dict of the same keys.

So the broker sees what 1,000 real endpoints would give it: two connections and users each, a
consumer per task queue, a steady stream of heartbeats into the ingest queue.  What is not
simulated: the engine, the journal, results (none are asked for).  All connections of the
process share one pika ``SelectConnection`` I/O loop (a real endpoint has one thread per
connection; the broker cannot tell).  Prints ``connected N`` once every connection is open, and
``failed: WHY`` for an endpoint that cannot connect; SIGTERM closes them all and exits.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sys
import time
from typing import Any

import pika
from pika.adapters.select_connection import IOLoop

from outpost.protocol import EndpointStatus
from outpost.runtime.amqp_confirms import persistent_json
from outpost.runtime.amqp_connection import AmqpTarget

PREFETCH = 64


class SimulatedEndpoint:
    """One endpoint's two connections on the shared loop (see the module docstring)."""

    def __init__(self, loop: IOLoop, registration: dict[str, Any], ready: list[int]) -> None:
        self.loop = loop
        self.endpoint_id = str(registration["endpoint_id"])
        amqp = registration["amqp"]
        self.amqp = amqp
        self.interval = float(amqp["heartbeat_interval"])
        self.ready = ready
        self.publisher: Any = None
        self.open = 0
        self.heartbeats = 0
        params = AmqpTarget(amqp["url"], f"sim-{self.endpoint_id[:8]}").parameters()
        params.socket_timeout = 30.0  # 2,000 connections opening at once on 2 cores
        self.consumer_connection = pika.SelectConnection(
            params,
            on_open_callback=self._consumer_open,
            on_open_error_callback=self._failed,
            custom_ioloop=loop,
        )
        self.publisher_connection = pika.SelectConnection(
            params,
            on_open_callback=self._publisher_open,
            on_open_error_callback=self._failed,
            custom_ioloop=loop,
        )

    def _failed(self, _connection: Any, error: BaseException) -> None:
        print(f"failed: endpoint {self.endpoint_id}: {error!r}", flush=True)

    def _opened(self) -> None:
        self.open += 1
        if self.open == 2:
            self.ready[0] += 1

    # consumer side
    def _consumer_open(self, connection: Any) -> None:
        connection.channel(on_open_callback=self._consumer_channel)

    def _consumer_channel(self, channel: Any) -> None:
        channel.basic_qos(prefetch_count=PREFETCH, callback=lambda _f: self._consume(channel))

    def _consume(self, channel: Any) -> None:
        def deliver(ch: Any, method: Any, _props: Any, _body: bytes) -> None:
            ch.basic_ack(method.delivery_tag)

        channel.basic_consume(self.amqp["task_queue"], deliver)
        self._opened()

    # publisher side
    def _publisher_open(self, connection: Any) -> None:
        connection.channel(on_open_callback=self._publisher_channel)

    def _publisher_channel(self, channel: Any) -> None:
        self.publisher = channel
        channel.confirm_delivery(lambda _frame: None)  # the real publisher's channel mode
        self._opened()
        # First heartbeat at once (as the endpoint does on connect), then every interval;
        # a random phase so 1,000 endpoints started together do not beat in step.
        self._beat()
        self.loop.call_later(random.uniform(0, self.interval), self._tick)

    def _tick(self) -> None:
        self._beat()
        self.loop.call_later(self.interval, self._tick)

    def _beat(self) -> None:
        if self.publisher is None or not self.publisher.is_open:
            return
        status = EndpointStatus(
            endpoint_id=self.endpoint_id,
            state="online",
            details={
                "hostname": HOSTNAME,
                "pid": os.getpid(),
                "workers": 0,
                "idle": 0,
                "outstanding_tasks": 0,
                "engine": {"type": "simulated"},
                "provider_error": None,
                "results_pending": 0,
                "journal": {},
            },
        )
        self.publisher.basic_publish(
            self.amqp["result_exchange"],
            self.amqp["status_routing_key"],
            status.to_bytes(),
            persistent_json(status.TYPE, None),
        )
        self.heartbeats += 1

    def close(self) -> None:
        for connection in (self.consumer_connection, self.publisher_connection):
            if connection.is_open:
                connection.close()


HOSTNAME = socket.gethostname()


def main(path: str) -> None:
    with open(path) as source:
        registrations = json.load(source)
    loop = IOLoop()
    ready = [0]
    endpoints: list[SimulatedEndpoint] = []

    def stop(_signum: int, _frame: object) -> None:
        loop.add_callback_threadsafe(lambda: [e.close() for e in endpoints])
        loop.call_later(2.0, loop.stop)

    signal.signal(signal.SIGTERM, stop)
    said = [False]

    def report() -> None:
        if ready[0] == len(registrations) and not said[0]:
            print(f"connected {ready[0]}", flush=True)
            said[0] = True
        loop.call_later(0.2, report)

    # Open connections a few at a time (a real fleet does not start in the same millisecond).
    def open_next(index: int) -> None:
        for registration in registrations[index : index + 10]:
            endpoints.append(SimulatedEndpoint(loop, registration, ready))
        if index + 10 < len(registrations):
            loop.call_later(0.02, lambda: open_next(index + 10))

    started = time.monotonic()
    loop.add_callback_threadsafe(lambda: open_next(0))
    loop.call_later(0.2, report)
    loop.start()
    beats = sum(e.heartbeats for e in endpoints)
    print(f"stopped after {time.monotonic() - started:.0f}s, {beats} heartbeats", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
