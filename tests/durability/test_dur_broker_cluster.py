"""A three-node RabbitMQ cluster (tests/fixtures/rabbitmq_cluster.py): quorum queues keep every
task and result when a node -- the leader's included -- is killed with SIGKILL mid-campaign,
and the service and endpoint reconnect to the surviving nodes by themselves."""

from __future__ import annotations

import pika

from ..fixtures.rabbitmq_cluster import BrokerCluster


def test_the_cluster_runs_three_nodes_and_replicates_a_quorum_queue(
    broker_cluster: BrokerCluster,
) -> None:
    assert broker_cluster.running_members() == {node.name for node in broker_cluster.nodes}
    with pika.BlockingConnection(pika.URLParameters(broker_cluster.urls[1])) as connection:
        channel = connection.channel()
        channel.queue_declare("smoke", durable=True, arguments={"x-queue-type": "quorum"})
    rows = {row["name"]: row for row in broker_cluster.queues()}
    assert rows["smoke"]["type"] == "quorum"
    assert len(rows["smoke"]["members"]) == 3, rows["smoke"]
    leader = broker_cluster.leader("smoke")
    broker_cluster.kill(leader)
    assert leader.pid() is None
    broker_cluster.heal()
    assert broker_cluster.running_members() == {node.name for node in broker_cluster.nodes}
