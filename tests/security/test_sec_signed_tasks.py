"""Signed tasks against the real daemon: what a broker-level attacker sends is dead-lettered.

The attacker here has a broker login that can write to the endpoint's task queue (guest, as a
leaked service password would give) but not the service's signing key.  Sent straight to the
queue: a tampered copy of a validly signed task, a task signed with another key, an unsigned
task, a signed task older than the window, and a validly signed task sent twice (a replay).
Counted: the four bad messages land in the dead-letter queue with a logged reason and never run
(each run leaves a file), the valid task runs exactly once despite its replay, and a campaign
submitted afterwards completes with one result per task.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pika
import sqlalchemy as sa

from outpost.protocol import TaskEnvelope, function_id_for, serialize, serialize_function
from outpost.protocol.signing import Signer, new_private_key
from outpost_service.store.schema import meta
from outpost_service.task_signing import KEY_NAME

from ..durability.campaign import Campaign, database, wait_until, work
from ..durability.conftest import (  # noqa: F401
    campaign,
    endpoint,
    service,
    service_database,
    service_home,
)
from ..e2e.stack import AMQP_URL, RunningEndpoint, RunningService


def service_signer(running: RunningService) -> Signer:
    with database(running).connect() as conn:
        key = conn.execute(sa.select(meta.c.value).where(meta.c.key == KEY_NAME)).scalar()
    assert key, "the service made no signing key"
    return Signer(key)


def runs_of(runs: Path, i: int) -> int:
    return len(list(runs.glob(f"{i}.*")))


def test_tampered_forged_unsigned_old_and_replayed_tasks(
    service: RunningService,  # noqa: F811
    endpoint: RunningEndpoint,  # noqa: F811
    campaign: Campaign,  # noqa: F811
) -> None:
    campaign.submit(5)  # signed by the service: they run
    campaign.wait_for(5)
    info = json.loads((endpoint.home / "endpoints" / endpoint.name / "endpoint.json").read_text())
    signer = service_signer(service)
    assert info["task_signing_key"] == signer.public_key

    runs, endpoint_id = campaign.runs.parent / "attack-runs", endpoint.endpoint_id
    runs.mkdir()

    def task(i: int) -> dict[str, Any]:
        envelope = TaskEnvelope(
            task_id=str(uuid.uuid4()),
            function_id=function_id_for(serialize_function(work)),
            function=serialize_function(work),
            args=serialize(((i, str(runs), -1), {})),
            endpoint_id=endpoint_id,
        )
        return envelope.to_dict()

    tampered = signer.sign(task(9001))
    tampered["args"] = task(9002)["args"]
    bad = {
        "tampered": tampered,
        "forged": Signer(new_private_key()).sign(task(9003)),
        "unsigned": task(9004),
        "old": signer.sign(task(9005), now=time.time() - 8 * 24 * 3600),
    }
    valid = json.dumps(signer.sign(task(7777))).encode()
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for body in [json.dumps(b).encode() for b in bad.values()] + [valid]:
            channel.basic_publish(
                f"{service.amqp_prefix}.tasks", endpoint_id, body,
                pika.BasicProperties(delivery_mode=2),
            )  # fmt: skip
        dead = f"{service.amqp_prefix}.dead"
        wait_until(
            lambda: channel.queue_declare(dead, passive=True).method.message_count == len(bad),
            60,
            "the four bad messages in the dead-letter queue",
        )
        wait_until(lambda: runs_of(runs, 7777) == 1, 60, "the validly signed task to run")
        log_path = endpoint.home / "endpoints" / endpoint.name / "endpoint.log"
        valid_id = json.loads(valid)["task_id"]
        channel.basic_publish(
            f"{service.amqp_prefix}.tasks", endpoint_id, valid,
            pika.BasicProperties(delivery_mode=2),
        )  # fmt: skip
        wait_until(
            lambda: f"task {valid_id} is already in the journal" in log_path.read_text(),
            60,
            "the replayed task to be recognised",
        )
    finally:
        connection.close()
    log = log_path.read_text()
    assert log.count("refused by the signature check") == len(bad)
    for reason in ("does not match", "is not signed", "over this endpoint's window"):
        assert reason in log
    assert [runs_of(runs, i) for i in (9001, 9002, 9003, 9004, 9005)] == [0] * 5
    assert runs_of(runs, 7777) == 1

    campaign.submit(30, first=5)
    campaign.wait_for(35)
    campaign.verdict()
