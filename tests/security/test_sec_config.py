"""Security settings: defaults, environment, and clear errors for bad values."""

from __future__ import annotations

import pytest

from outpost.errors import ConfigurationError
from outpost_service import ServiceConfig
from outpost_service.broker.admin import BrokerAdmin, default_management_url, with_credentials
from outpost_service.broker.topology import Topology


def test_defaults_are_the_safe_ones() -> None:
    config = ServiceConfig(database_url="sqlite://")
    assert config.broker_auth == "per-endpoint"
    assert config.task_max_age == 7 * 24 * 3600
    assert config.rate_limit > 0 and config.rate_burst > 0


def test_environment_sets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTPOST_BROKER_AUTH", "shared")
    monkeypatch.setenv("OUTPOST_AMQP_MANAGEMENT_URL", "https://mq.example.org:15671/")
    monkeypatch.setenv("OUTPOST_RATE_LIMIT", "5")
    monkeypatch.setenv("OUTPOST_RATE_BURST", "7")
    monkeypatch.setenv("OUTPOST_TASK_MAX_AGE", "3600")
    config = ServiceConfig.from_env(database_url="sqlite://")
    assert (config.broker_auth, config.management_url) == (
        "shared",
        "https://mq.example.org:15671/",
    )
    assert (config.rate_limit, config.rate_burst, config.task_max_age) == (5.0, 7, 3600.0)


@pytest.mark.parametrize(
    "setting, value, words",
    [
        ("broker_auth", "none", "per-endpoint, shared"),
        ("rate_limit", -1, "rate_limit"),
        ("rate_burst", 0, "rate_burst"),
        ("task_max_age", 0, "task_max_age"),
    ],
)
def test_bad_values_are_named(setting: str, value: object, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words) as refused:
        ServiceConfig(database_url="sqlite://", **{setting: value})
    assert repr(value) in str(refused.value)


def test_management_url_is_derived_from_the_amqp_url() -> None:
    assert default_management_url("amqp://admin:p%40ss@mq:5672/") == "http://admin:p%40ss@mq:15672/"
    assert default_management_url("amqps://u:p@mq/") == "https://u:p@mq:15671/"
    assert default_management_url("amqp://127.0.0.1:5699/") == "http://guest:guest@127.0.0.1:15699/"
    admin = BrokerAdmin("http://mq:15672/", "amqp://svc:pw@mq:5672/outpost", Topology("p"))
    assert admin.api == "http://mq:15672/api" and admin.auth == ("svc", "pw")
    assert admin.vhost == "outpost"
    with pytest.raises(Exception, match="management_url"):
        BrokerAdmin("ftp://mq/", "amqp://mq/", Topology("p"))


def test_issued_url_keeps_host_port_and_vhost() -> None:
    url = with_credentials("amqps://svc:pw@mq.example.org:5671/prod?heartbeat=30", "u-1", "a/b+c")
    assert url == "amqps://u-1:a%2Fb%2Bc@mq.example.org:5671/prod?heartbeat=30"


def test_permissions_name_only_the_endpoints_own_objects() -> None:
    admin = BrokerAdmin("http://mq:15672/", "amqp://mq/", Topology("e2e-ab12"))
    perms = admin.permissions("0f2d6a52-8d0a-4a43-9d9f-7d5b1bb2c8f1")
    assert perms["configure"] == "^$"
    assert perms["read"] == r"^e2e\-ab12\.tasks\.0f2d6a52\-8d0a\-4a43\-9d9f\-7d5b1bb2c8f1$"
    assert perms["write"] == r"^e2e\-ab12\.results$"
    topic = admin.topic_permissions("0f2d6a52-8d0a-4a43-9d9f-7d5b1bb2c8f1")
    assert topic["exchange"] == "e2e-ab12.results" and topic["read"] == "^$"


def test_a_clusters_other_management_apis_are_tried_when_the_first_is_down() -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on: a dead node's API
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    admin = BrokerAdmin(
        dead,
        "amqp://guest:guest@127.0.0.1:5672/",
        Topology("p"),
        other_management_urls=["http://127.0.0.1:15672/"],
    )
    assert admin.broker_version() is not None
    assert admin.api == "http://127.0.0.1:15672/api"  # the one that answered goes first
