"""Settings: defaults, then the environment, then explicit values."""

from __future__ import annotations

from pathlib import Path

import pytest

from outpost.errors import ConfigurationError
from outpost_service import ServiceConfig


def test_defaults_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "OUTPOST_DATABASE_URL",
        "OUTPOST_AMQP_URL",
        "OUTPOST_PUBLIC_AMQP_URL",
        "OUTPOST_AMQP_PREFIX",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OUTPOST_HOME", str(tmp_path))
    config = ServiceConfig.from_env()
    assert config.database_url == f"sqlite:///{tmp_path}/service/outpost.db"
    assert config.amqp_url == "amqp://guest:guest@127.0.0.1:5672/"
    assert config.public_amqp_url == config.amqp_url
    assert (config.amqp_prefix, config.heartbeat_interval) == ("outpost", 10.0)
    assert config.payload_limit == 10 * 1024 * 1024
    assert config.result_retention == 14 * 24 * 3600

    monkeypatch.setenv("OUTPOST_AMQP_URL", "amqp://u:p@broker:5672/")
    monkeypatch.setenv("OUTPOST_PUBLIC_AMQP_URL", "amqp://u:p@public:5672/")
    monkeypatch.setenv("OUTPOST_AMQP_PREFIX", "site")
    config = ServiceConfig.from_env(amqp_prefix="explicit")
    assert config.amqp_url == "amqp://u:p@broker:5672/"
    assert config.public_amqp_url == "amqp://u:p@public:5672/"
    assert config.amqp_prefix == "explicit"


def test_mapping_keys_are_checked() -> None:
    assert ServiceConfig.from_mapping({"PAYLOAD_LIMIT": 5}).payload_limit == 5
    with pytest.raises(ConfigurationError, match="unknown service setting 'colour'"):
        ServiceConfig.from_mapping({"colour": "blue"})
    with pytest.raises(ConfigurationError, match="heartbeat_interval"):
        ServiceConfig(heartbeat_interval=0)
    with pytest.raises(ConfigurationError, match="amqp_prefix"):
        ServiceConfig(amqp_prefix="has #")


def test_fairness_and_broker_limit_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings of docs/SECURITY.md "Fair service" and the broker limits, from the
    environment (text) and checked with errors that name the setting and its variable."""
    monkeypatch.setenv("OUTPOST_LONGPOLL_PER_USER", "4")
    monkeypatch.setenv("OUTPOST_CHANNEL_TIMEOUT", "12.5")
    monkeypatch.setenv("OUTPOST_DEAD_LETTER_MAX_LENGTH", "1000")
    monkeypatch.setenv("OUTPOST_ENDPOINT_MAX_CONNECTIONS", "3")
    config = ServiceConfig.from_env()
    assert (config.longpoll_per_user, config.channel_timeout) == (4, 12.5)
    assert (config.dead_letter_max_length, config.endpoint_max_connections) == (1000, 3)
    assert (config.longpoll_slots, config.connection_limit) == (1000, 2000)  # defaults

    monkeypatch.setenv("OUTPOST_LONGPOLL_PER_USER", "lots")
    with pytest.raises(ConfigurationError, match=r"longpoll_per_user \(env OUTPOST_LONGPOLL"):
        ServiceConfig.from_env()
    monkeypatch.delenv("OUTPOST_LONGPOLL_PER_USER")
    for bad in ({"longpoll_per_user": 0}, {"connection_limit": -1}, {"dead_letter_ttl": 0}):
        with pytest.raises(ConfigurationError, match=next(iter(bad))):
            ServiceConfig.from_env(**bad)
    with pytest.raises(ConfigurationError, match="longpoll_slots must be positive"):
        ServiceConfig.from_env(longpoll_slots=-2)


def test_every_setting_reads_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """OUTPOST_<NAME> for every setting (docs/CONFIGURATION.md), and the one older name."""
    monkeypatch.setenv("OUTPOST_PURGE_INTERVAL", "60")
    monkeypatch.setenv("OUTPOST_AMQP_MANAGEMENT_URL", "http://mq:15672/")
    config = ServiceConfig.from_env()
    assert (config.purge_interval, config.management_url) == (60.0, "http://mq:15672/")
    monkeypatch.setenv("OUTPOST_PURGE_INTERVAL", "-1")
    with pytest.raises(ConfigurationError, match=r"purge_interval \(env OUTPOST_PURGE_INTERVAL\)"):
        ServiceConfig.from_env()


def test_unknown_settings_suggest_the_one_meant() -> None:
    with pytest.raises(ConfigurationError, match="did you mean 'payload_limit'"):
        ServiceConfig.from_mapping({"payload_limt": 1})


def test_a_cluster_is_a_list_of_broker_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = "amqp://svc:pw@rmq-1:5672/", "amqp://svc:pw@rmq-2:5672/"
    monkeypatch.setenv("OUTPOST_AMQP_URLS", f"{a}, {b}")
    config = ServiceConfig.from_env()
    assert config.broker_urls == [a, b]
    assert config.endpoint_broker_urls == [a, b]  # endpoints reach the same nodes by default
    public = config.replace(public_amqp_urls="amqps://edge-1:5671/,amqps://edge-2:5671/")
    assert public.endpoint_broker_urls == ["amqps://edge-1:5671/", "amqps://edge-2:5671/"]
    monkeypatch.delenv("OUTPOST_AMQP_URLS")
    single = ServiceConfig.from_env(amqp_url=a)
    assert (single.broker_urls, single.endpoint_broker_urls) == ([a], [a])
    monkeypatch.setenv("OUTPOST_AMQP_URLS", f"{a},http://rmq-2:15672/")
    with pytest.raises(ConfigurationError, match=r"amqp_urls \(env OUTPOST_AMQP_URLS\) must be"):
        ServiceConfig.from_env()
