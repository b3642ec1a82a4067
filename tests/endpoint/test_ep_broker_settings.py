"""The registration's ``amqp`` settings as the endpoint reads them: parsed through the
protocol's ``BrokerSettings``, a cluster's node list kept in order, config.yaml overrides
keeping the issued credentials, and a malformed answer a clear ``BrokerError``."""

from __future__ import annotations

from typing import Any

import pytest

from outpost_endpoint.amqp.connection import AmqpSettings
from outpost_endpoint.errors import BrokerError

ISSUED: dict[str, Any] = {
    "url": "amqp://outpost-ep-1:s3cret@rmq-1:5672/",
    "urls": ["amqp://outpost-ep-1:s3cret@rmq-1:5672/", "amqp://outpost-ep-1:s3cret@rmq-2:5672/"],
    "task_exchange": "x.tasks",
    "task_queue": "x.tasks.e",
    "result_exchange": "x.results",
    "result_routing_key": "e.result",
    "status_routing_key": "e.status",
    "heartbeat_interval": 5,
}


def test_the_nodes_the_service_names_are_tried_in_order() -> None:
    settings = AmqpSettings.from_registration(ISSUED)
    assert settings.urls == tuple(ISSUED["urls"])
    assert settings.target("t").urls == settings.urls
    assert "s3cret" not in settings.shown()
    assert settings.heartbeat_interval == 5.0


def test_an_answer_without_urls_is_one_node() -> None:
    settings = AmqpSettings.from_registration({k: v for k, v in ISSUED.items() if k != "urls"})
    assert settings.urls == (ISSUED["url"],)


def test_configured_urls_replace_the_nodes_and_keep_the_credentials() -> None:
    settings = AmqpSettings.from_registration(
        ISSUED, url_override=["amqp://tunnel-a:5672/", "amqp://tunnel-b:5672/"]
    )
    assert settings.urls == (
        "amqp://outpost-ep-1:s3cret@tunnel-a:5672/",
        "amqp://outpost-ep-1:s3cret@tunnel-b:5672/",
    )


def test_a_malformed_answer_says_which_field() -> None:
    with pytest.raises(BrokerError, match=r"task_queue: Field required.*versions may not match"):
        AmqpSettings.from_registration({k: v for k, v in ISSUED.items() if k != "task_queue"})
    with pytest.raises(BrokerError, match=r"urls"):
        AmqpSettings.from_registration({**ISSUED, "urls": "amqp://one/"})
