"""Removing what a test service made on the shared RabbitMQ: its exchanges and queues, its
endpoints' broker users and its dead-letter policy (all named by the service's prefix)."""

from __future__ import annotations

import os

import pika
import requests

AMQP_URL = os.environ.get("OUTPOST_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MANAGEMENT_API = "http://127.0.0.1:15672/api"
GUEST = ("guest", "guest")


def task_queues(prefix: str, endpoint_ids: list[str]) -> list[str]:
    """The broker's task queues of these endpoints: tagged names (broker/topology.py) are
    found by listing, the untagged ones of earlier versions are named."""
    listed = requests.get(f"{MANAGEMENT_API}/queues/%2F?columns=name", auth=GUEST, timeout=10)
    names = [q["name"] for q in listed.json()] if listed.ok else []
    return [
        name
        for endpoint_id in endpoint_ids
        for name in [f"{prefix}.tasks.{endpoint_id}", *names]
        if name == f"{prefix}.tasks.{endpoint_id}"
        or name.startswith(f"{prefix}.tasks.{endpoint_id}.")
    ]


def delete_topology(prefix: str, endpoint_ids: list[str]) -> None:
    """Remove the exchanges, queues and endpoint users a test service made on the shared broker."""
    for endpoint_id in endpoint_ids:  # per-endpoint users (docs/SECURITY.md); 404 if none
        requests.delete(
            f"{MANAGEMENT_API}/users/outpost-ep-{endpoint_id}",
            auth=GUEST,
            timeout=10,
        )
    requests.delete(  # the operator policy capping P.dead (broker/admin.py)
        f"{MANAGEMENT_API}/operator-policies/%2F/{prefix}.dead-letter-limits",
        auth=GUEST,
        timeout=10,
    )
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        for queue in task_queues(prefix, endpoint_ids):
            channel.queue_delete(queue)
        for exchange in ("tasks", "results", "dead", "wakeups"):
            channel.exchange_delete(f"{prefix}.{exchange}")
        for queue in ("ingest", "dead"):
            channel.queue_delete(f"{prefix}.{queue}")
    finally:
        connection.close()
