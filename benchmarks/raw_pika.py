"""The physical limit of Outpost's path: the same two broker hops in raw pika, nothing else.

A task goes client → RabbitMQ → endpoint and its result endpoint → RabbitMQ → service.  Here
the client publishes N task-sized messages (persistent, publisher confirms pipelined: all
published, confirms awaited as they come) to a queue; an *echo* process consumes them (prefetch
window), publishes a result-sized message for each (persistent, pipelined confirms) and acks
each task only once its result is confirmed, as the endpoint does; the client consumes the
results.  The figure is N / (first publish → last result received).  No HTTP, no database,
no serialization: what Outpost adds on top is everything else.
"""

from __future__ import annotations

import multiprocessing
import secrets
import time
from typing import Any

import pika

PREFETCH = 256


def _confirming(channel: Any, on_confirm: Any) -> None:
    """Confirm mode on ``channel`` with a callback per (possibly multiple) ack; no sync wait."""
    selected: list[bool] = []
    channel._impl.confirm_delivery(on_confirm, callback=lambda _frame: selected.append(True))
    while not selected:
        channel.connection.process_data_events(time_limit=0.1)


def _echo(url: str, tasks: str, results: str, result_size: int, count: int) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    consume = connection.channel()
    publish = connection.channel()
    consume.basic_qos(prefetch_count=PREFETCH)
    body = b"r" * result_size
    pending: dict[int, int] = {}  # result publish seq -> task delivery tag
    state = {"seq": 0, "done": 0}

    def on_confirm(frame: Any) -> None:
        method = frame.method
        upto = method.delivery_tag
        seqs = [s for s in pending if s <= upto] if method.multiple else [upto]
        if not seqs:
            return
        tags = [pending.pop(s) for s in seqs]
        consume.basic_ack(max(tags), multiple=len(tags) > 1)
        state["done"] += len(tags)

    _confirming(publish, on_confirm)

    def on_task(_ch: Any, method: Any, _props: Any, _body: bytes) -> None:
        state["seq"] += 1
        pending[state["seq"]] = method.delivery_tag
        publish.basic_publish("", results, body, pika.BasicProperties(delivery_mode=2))

    consume.basic_consume(tasks, on_task)
    while state["done"] < count:
        connection.process_data_events(time_limit=0.5)
    connection.close()


def measure(url: str, count: int, task_size: int, result_size: int) -> dict[str, float]:
    """One run: ``count`` round trips of ``task_size``/``result_size``-byte messages."""
    suffix = secrets.token_hex(4)
    tasks, results = f"bench-raw-tasks-{suffix}", f"bench-raw-results-{suffix}"
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    for queue in (tasks, results):
        channel.queue_declare(queue, durable=True)
    echo = multiprocessing.get_context("spawn").Process(
        target=_echo, args=(url, tasks, results, result_size, count), daemon=True
    )
    echo.start()
    try:
        confirmed = {"n": 0}

        def on_confirm(frame: Any) -> None:
            confirmed["n"] = frame.method.delivery_tag  # acks only here; nacks would stall

        _confirming(channel, on_confirm)
        received = {"n": 0}

        def on_result(ch: Any, method: Any, _props: Any, _body: bytes) -> None:
            received["n"] += 1
            if received["n"] % 64 == 0 or received["n"] == count:
                ch.basic_ack(method.delivery_tag, multiple=True)

        consumer = connection.channel()
        consumer.basic_qos(prefetch_count=PREFETCH * 4)
        consumer.basic_consume(results, on_result)
        body = b"t" * task_size
        properties = pika.BasicProperties(delivery_mode=2)
        start = time.perf_counter()
        for _ in range(count):
            channel.basic_publish("", tasks, body, properties)
        while received["n"] < count:
            connection.process_data_events(time_limit=0.5)
        elapsed = time.perf_counter() - start
        while confirmed["n"] < count:  # (long since true: results imply confirmed tasks)
            connection.process_data_events(time_limit=0.5)
    finally:
        echo.join(30)
        if echo.is_alive():
            echo.kill()
        for queue in (tasks, results):
            channel.queue_delete(queue)
        connection.close()
    return {"tasks": count, "seconds": elapsed, "rate": count / elapsed}
