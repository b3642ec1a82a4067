"""A three-node RabbitMQ cluster (tests/fixtures/rabbitmq_cluster.py): quorum queues keep every
task and result when a node is killed with SIGKILL mid-campaign, and the service and the
endpoint reconnect to the surviving nodes by themselves (``OUTPOST_AMQP_URLS``).

The campaign is :data:`CLUSTER_TASKS` tasks (5,000) submitted through the SDK's ``Executor``
to a real service and a real endpoint daemon (process pool).  Two victims:

* ``leader``: the node holding the quorum leader of the endpoint's task queue (and, as every
  connection goes to the first node that answers, the node of the service's and the
  endpoint's connections) -- the queue elects a new leader and every client reconnects;
* ``endpoint-node``: the endpoint is configured (config.yaml ``amqp_urls``) to try another node
  first; that node, which leads no queue, is killed -- only the endpoint reconnects.

Counted, as the user sees it: every future resolves exactly once (one done-callback each)
with ``i * i``; the service stores exactly one terminal event and the right value per task;
no task ran twice.  The killed node is not restarted until the campaign ended: the cluster
runs on two nodes meanwhile.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pika
import pytest

from outpost import Client, Executor

from ..e2e.stack import RunningEndpoint, RunningService, make_endpoint, start_service
from ..fixtures.rabbitmq_cluster import BrokerCluster
from .campaign import WAIT, Campaign, wait_until, work
from .conftest import stop

#: Tasks per cluster campaign (``OUTPOST_CLUSTER_TASKS``; the issue's figure is 5,000).
CLUSTER_TASKS = int(os.environ.get("OUTPOST_CLUSTER_TASKS", "5000"))
#: Seconds the whole campaign may take (about 40 s here).
CLUSTER_WAIT = float(os.environ.get("OUTPOST_DURABILITY_WAIT", "180"))


def test_the_cluster_runs_three_nodes_and_replicates_a_quorum_queue(
    broker_cluster: BrokerCluster,
) -> None:
    assert broker_cluster.running_members() == {node.name for node in broker_cluster.nodes}
    queue = f"smoke-{uuid.uuid4().hex[:8]}"
    with pika.BlockingConnection(pika.URLParameters(broker_cluster.urls[1])) as connection:
        connection.channel().queue_declare(
            queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
    rows = {row["name"]: row for row in broker_cluster.queues()}
    assert rows[queue]["type"] == "quorum"
    assert len(rows[queue]["members"]) == 3, rows[queue]  # type: ignore[arg-type]
    leader = broker_cluster.leader(queue)
    broker_cluster.kill(leader)
    assert leader.pid() is None
    broker_cluster.heal()
    assert broker_cluster.running_members() == {node.name for node in broker_cluster.nodes}
    broker_cluster.ctl("delete_queue", queue)


@pytest.fixture
def cluster_service(
    broker_cluster: BrokerCluster, service_home: Path, service_database: str
) -> Iterator[RunningService]:
    """A service on the cluster (every node's URL, quorum queues, per-endpoint users)."""
    env = {
        "OUTPOST_AMQP_URLS": broker_cluster.url_list,
        "OUTPOST_QUEUE_TYPE": "quorum",
        "OUTPOST_REPUBLISH_AFTER": "2",
    }
    service = start_service(
        service_home, service_database, amqp_url=broker_cluster.urls[0], env_extra=env
    )
    yield service
    stop(service, shared_broker=False)


@pytest.mark.parametrize("victim", ["leader", "endpoint-node"])
def test_kill_9_one_cluster_node_mid_campaign(
    broker_cluster: BrokerCluster,
    cluster_service: RunningService,
    tmp_path: Path,
    victim: str,
) -> None:
    first, other = broker_cluster.nodes[0], broker_cluster.nodes[1]
    order = [other, first, broker_cluster.nodes[2]] if victim == "endpoint-node" else None

    def edit(config: dict[str, Any]) -> None:
        if order is not None:  # no credentials: the endpoint keeps those the service issued
            config["amqp_urls"] = [f"amqp://127.0.0.1:{node.port}/" for node in order]

    endpoint = make_endpoint(cluster_service, tmp_path / "endpoint", "cluster", edit=edit)
    try:
        run_campaign_killing(broker_cluster, cluster_service, endpoint, tmp_path, victim)
    except BaseException:
        print("service output:\n" + "".join(cluster_service.output[-80:]))
        raise
    finally:
        endpoint.run("stop", endpoint.name, check=False, timeout=180)


def run_campaign_killing(
    cluster: BrokerCluster,
    service: RunningService,
    endpoint: RunningEndpoint,
    tmp_path: Path,
    victim: str,
) -> None:
    queue = endpoint.task_queue
    rows = {row["name"]: row for row in cluster.queues()}
    assert rows[queue]["type"] == "quorum", rows[queue]
    leader = cluster.leader(queue)
    if victim == "leader":
        doomed = leader
    else:
        doomed = cluster.nodes[1]
        assert doomed != leader, f"the endpoint's first node {doomed.name} leads {queue}"
        assert doomed != cluster.leader(f"{service.amqp_prefix}.ingest")

    runs = tmp_path / "runs"
    runs.mkdir()
    journal = endpoint.home / "endpoints" / endpoint.name / "journal.db"
    campaign = Campaign(service, endpoint.endpoint_id, runs, journal=journal)
    resolved: Counter[int] = Counter()
    lock = threading.Lock()

    def count(i: int) -> Any:
        def done(_future: Future[Any]) -> None:
            with lock:
                resolved[i] += 1

        return done

    client = Client(url=service.url, token=service.token, retries=5)
    with Executor(endpoint_id=endpoint.endpoint_id, client=client) as executor:
        futures = []
        for i in range(CLUSTER_TASKS):
            future = executor.submit(work, i, str(runs))
            future.add_done_callback(count(i))
            futures.append(future)
            if i == CLUSTER_TASKS // 2:
                # mid-campaign: half submitted, some finished, most still on their way
                wait_until(lambda: sum(resolved.values()) >= CLUSTER_TASKS // 10, WAIT, "results")
                cluster.kill(doomed)
        values = [future.result(timeout=CLUSTER_WAIT) for future in futures]
    client.close()

    assert values == [i * i for i in range(CLUSTER_TASKS)]
    wait_until(lambda: len(resolved) == CLUSTER_TASKS, 30, "every done-callback")
    assert set(resolved.values()) == {1}, "a future resolved more than once"
    campaign.record([str(f.task_id) for f in futures], range(CLUSTER_TASKS))
    verdict = campaign.verdict()
    assert verdict["ran_twice_or_more"] == 0, verdict
    assert doomed.pid() is None, "the killed node came back during the campaign"
    survivors = {node.name for node in cluster.nodes if node != doomed}
    assert survivors <= cluster.running_members()
    print(f"cluster kill -9 ({victim}: {doomed.name}): {verdict}")
