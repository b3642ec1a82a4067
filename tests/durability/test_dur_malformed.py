"""Hostile messages sent straight to an endpoint's task queue are dead-lettered, and the daemon
keeps working.  (tests/endpoint/test_ep_link.py covers garbage bytes, a wrong protocol version
and another endpoint's task against the in-process link; this adds the huge and the wrongly
typed messages, against the real daemon.)

Sent: an 8 MiB body of junk, a valid *result* envelope, a JSON object with an unknown ``type``,
and a JSON array.  Counted: all four land in the dead-letter queue, each rejection is logged
with its reason, and a campaign submitted afterwards completes with one result per task.
"""

from __future__ import annotations

import json

import pika

from outpost.protocol import PROTOCOL_VERSION, ResultEnvelope, TaskState

from ..e2e.stack import AMQP_URL, RunningEndpoint, RunningService
from .campaign import Campaign, wait_until


def test_malformed_messages_are_dead_lettered(
    service: RunningService, endpoint: RunningEndpoint, campaign: Campaign
) -> None:
    prefix, endpoint_id = service.amqp_prefix, endpoint.endpoint_id
    result = ResultEnvelope(task_id="t-1", endpoint_id=endpoint_id, state=TaskState.SUCCESS)
    bodies = [
        b"\x00junk" * (8 * 1024 * 1024 // 5),
        result.to_bytes(),
        json.dumps({"v": PROTOCOL_VERSION, "type": "surprise", "task_id": "x"}).encode(),
        b"[1, 2, 3]",
    ]
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for body in bodies:
            channel.basic_publish(
                f"{prefix}.tasks", endpoint_id, body, pika.BasicProperties(delivery_mode=2)
            )
        dead = f"{prefix}.dead"
        wait_until(
            lambda: channel.queue_declare(dead, passive=True).method.message_count == len(bodies),
            60,
            "the four messages in the dead-letter queue",
        )
        got = []
        for _ in bodies:
            method, _props, body = channel.basic_get(dead, auto_ack=True)
            assert method is not None
            got.append(body)
        assert sorted(got) == sorted(bodies)
    finally:
        connection.close()
    log = (endpoint.home / "endpoints" / endpoint.name / "endpoint.log").read_text()
    assert log.count("rejecting message (dead-lettered)") >= len(bodies)
    assert "does not belong on a task queue" in log

    campaign.submit(50)
    campaign.wait_for(50)
    campaign.verdict()
