"""Pipelined publisher confirms: pika's private blocking-channel side vs the public I/O thread.

``python -m benchmarks.confirms_choice [--messages 20000] [--size 1024] [--batch 500]
[--repeats 3]`` publishes persistent messages in batches to a throwaway queue on the local
RabbitMQ (``OUTPOST_TEST_AMQP_URL``, default ``amqp://guest:guest@127.0.0.1:5672/``), waiting
for each batch's confirms before the next, as the service's submit and the endpoint's result
publisher do:

* ``private``: the way both sides published before ``outpost.runtime.amqp_confirms`` -- a
  ``BlockingConnection`` whose channel's asynchronous side (``channel._impl``) had confirms
  enabled with a callback, messages buffered through it and ``process_data_events`` run until
  the batch was confirmed;
* ``public``: :class:`outpost.runtime.amqp_confirms.ConfirmingConnection`, a
  ``SelectConnection`` on its own I/O thread, batches handed over with
  ``add_callback_threadsafe``.

The two alternate within each repeat; it prints messages per second of each and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections import OrderedDict
from typing import Any

import pika

from outpost.runtime.amqp_confirms import ConfirmingConnection, Message, persistent_json
from outpost.runtime.amqp_connection import AmqpTarget

URL = os.environ.get("OUTPOST_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def private_way(url: str, queue: str, bodies: list[bytes], batch: int) -> tuple[float, float]:
    """Wall and CPU seconds to publish ``bodies`` the earlier way (see the module docstring)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    waiting: OrderedDict[int, bool] = OrderedDict()
    selected: list[bool] = []

    def on_confirm(frame: Any) -> None:
        method = frame.method
        if method.multiple:
            while waiting and next(iter(waiting)) <= method.delivery_tag:
                waiting.popitem(last=False)
        else:
            waiting.pop(method.delivery_tag, None)
        if not waiting:
            connection.call_later(0, lambda: None)  # ends process_data_events at once

    impl = channel._impl
    impl.confirm_delivery(on_confirm, callback=lambda _frame: selected.append(True))
    while not selected:
        connection.process_data_events(time_limit=1.0)
    tag = 1
    start, cpu = time.perf_counter(), time.process_time()
    for first in range(0, len(bodies), batch):
        for body in bodies[first : first + batch]:
            waiting[tag] = True
            tag += 1
            properties = persistent_json("bench", f"m{tag}")
            impl.basic_publish("", queue, body, properties, mandatory=True)
        while waiting:
            connection.process_data_events(time_limit=1.0)
    elapsed = time.perf_counter() - start, time.process_time() - cpu
    connection.close()
    return elapsed


def public_way(url: str, queue: str, bodies: list[bytes], batch: int) -> tuple[float, float]:
    """Wall and CPU seconds to publish ``bodies`` through :class:`ConfirmingConnection`."""
    connection = ConfirmingConnection.open(AmqpTarget(url, "confirms-choice"))
    start, cpu = time.perf_counter(), time.process_time()
    for first in range(0, len(bodies), batch):
        messages = [
            Message("", queue, body, persistent_json("bench", f"m{first + i}"), mandatory=True)
            for i, body in enumerate(bodies[first : first + batch])
        ]
        taken = connection.publish(messages, timeout=60)
        assert all(taken), "RabbitMQ refused a message"
    elapsed = time.perf_counter() - start, time.process_time() - cpu
    connection.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=1024, help="bytes per message")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    bodies = [os.urandom(options.size // 2).hex().encode() for _ in range(options.messages)]
    queue = f"bench-confirms-{uuid.uuid4().hex[:8]}"
    admin = pika.BlockingConnection(pika.URLParameters(URL))
    channel = admin.channel()
    channel.queue_declare(queue, durable=True)
    rates: dict[str, list[float]] = {"private": [], "public": []}
    cpu: dict[str, list[float]] = {"private": [], "public": []}
    ratios = []
    try:
        for repeat in range(options.repeats):
            ways = [("private", private_way), ("public", public_way)]
            if repeat % 2:
                ways.reverse()  # neither always goes first
            run = {}
            for name, way in ways:
                wall, used = way(URL, queue, bodies, options.batch)
                run[name] = options.messages / wall
                rates[name].append(run[name])
                cpu[name].append(used / options.messages * 1e6)
                channel.queue_purge(queue)
            ratios.append(run["public"] / run["private"])
            print(
                f"repeat {repeat + 1}: private {run['private']:,.0f} msg/s, "
                f"public {run['public']:,.0f} msg/s, public/private {ratios[-1]:.3f}",
                flush=True,
            )
    finally:
        channel.queue_delete(queue)
        admin.close()
    for name, values in rates.items():
        print(
            f"{name}: median {statistics.median(values):,.0f} msg/s "
            f"({min(values):,.0f}-{max(values):,.0f}, n={len(values)}), "
            f"publisher CPU {statistics.median(cpu[name]):.1f} us/msg"
        )
    print(f"public/private ratio: median {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
