"""TLS everywhere it can be on: the service serving HTTPS itself, the SDK and the endpoint
trusting a private CA, and both the endpoint and the service reaching RabbitMQ over AMQPS
(verified against a CA file, with a client certificate, host names checked).

Everything is real: a throwaway CA made with ``cryptography`` (tests/fixtures/tls_ca.py), an
``outpost-service serve --tls-cert/--tls-key`` process, an endpoint daemon started with the
real CLI, and a private RabbitMQ node with a TLS listener that demands client certificates
(tests/fixtures/rabbitmq_private.sh).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import pytest
import yaml
from click.testing import CliRunner

from outpost import Client, Executor
from outpost.errors import ConfigurationError, InvalidRequestError, ServiceUnavailableError
from outpost.protocol import TaskEnvelope, serialize
from outpost.protocol.tls import TlsFiles, http_verify
from outpost_endpoint.amqp.connection import connect
from outpost_endpoint.config import parse_config
from outpost_endpoint.errors import BrokerError
from outpost_service.broker.publisher import Publisher
from outpost_service.broker.topology import Topology
from outpost_service.cli import main as service_cli
from outpost_service.errors import BrokerError as ServiceBrokerError

from ..e2e.stack import (
    RunningEndpoint,
    RunningService,
    checked,
    cli,
    make_endpoint,
    start_service,
    stop_service,
)
from ..fixtures.tls_ca import CertFiles, make_ca
from ..recipes import ensure_private_rabbitmq, private_broker_port

RABBITMQ_PRIVATE = Path(__file__).parent.parent / "fixtures" / "rabbitmq_private.sh"


def cube(x: int) -> int:
    return x**3


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_ca(tmp_path_factory.mktemp("tls-ca"))


# ---------------------------------------------------------------------------- HTTPS service
@pytest.fixture(scope="module")
def https_service(
    certs: CertFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    home = tmp_path_factory.mktemp("tls-service")
    tls = ("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key))
    # create-user runs with the service's environment: the CA is not needed for it (no HTTP).
    running = start_service(home, f"sqlite:///{home}/outpost.db", extra=tls)
    yield running
    stop_service(running)


def test_sdk_and_endpoint_round_trip_over_https(
    https_service: RunningService,
    certs: CertFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert https_service.url.startswith("https://127.0.0.1:")
    # The endpoint trusts the private CA through its config.yaml key, not the environment.
    monkeypatch.delenv("OUTPOST_CA_BUNDLE", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)

    def edit(config: dict[str, Any]) -> None:
        config["engine"] = {"type": "process-pool", "max_workers": 1}
        config["service_ca_file"] = str(certs.ca_cert)

    name = f"tls{uuid.uuid4().hex[:6]}"
    endpoint = make_endpoint(https_service, tmp_path, name, edit=edit)
    try:
        client = Client(https_service.url, https_service.token, verify=str(certs.ca_cert))
        with Executor(endpoint_id=endpoint.endpoint_id, client=client) as ex:
            assert ex.submit(cube, 7).result(timeout=60) == 343
        listed = client.list_endpoints()
        assert [e["endpoint_id"] for e in listed] == [endpoint.endpoint_id]
    finally:
        endpoint.run("stop", name, check=False)


def test_https_clients_trust_the_ca_from_the_standard_variables(
    https_service: RunningService, certs: CertFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTPOST_CA_BUNDLE", str(certs.ca_cert))
    assert Client.anonymous(https_service.url, retries=0).health()["status"] == "ok"
    monkeypatch.delenv("OUTPOST_CA_BUNDLE")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs.ca_cert))  # requests' own convention
    assert Client.anonymous(https_service.url, retries=0).health()["status"] == "ok"
    # An explicit bundle wins over the environment, in both directions.
    with pytest.raises(ServiceUnavailableError, match="certificate verify failed"):
        Client.anonymous(https_service.url, retries=0, verify=str(certs.other_ca_cert)).health()


def test_https_refuses_clients_that_do_not_trust_it(
    https_service: RunningService, certs: CertFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("OUTPOST_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ServiceUnavailableError) as untrusted:
        Client(https_service.url, https_service.token, retries=0).list_endpoints()
    assert "certificate verify failed" in str(untrusted.value)
    assert "OUTPOST_CA_BUNDLE" in str(untrusted.value)
    assert untrusted.value.code == "tls_error"
    # A plain-HTTP client at the HTTPS port is told to use https:// (the server answers 400
    # or resets the connection, depending on timing).
    plain = https_service.url.replace("https://", "http://")
    with pytest.raises((ServiceUnavailableError, InvalidRequestError), match="https://"):
        Client(plain, https_service.token, retries=0).list_endpoints()
    # A missing bundle is named at once, before any request.
    monkeypatch.setenv("OUTPOST_CA_BUNDLE", str(certs.ca_cert) + ".missing")
    with pytest.raises(ConfigurationError, match=r"OUTPOST_CA_BUNDLE.*does not exist"):
        Client(https_service.url, https_service.token)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (("server_cert", None), "needs both tls_cert and tls_key"),
        (("missing", "server_key"), "does not exist"),
        (("server_cert", "client_key"), "does not match"),
        (("server_key", "server_key"), "not a PEM certificate"),
    ],
)
def test_serve_refuses_unusable_tls_files(
    certs: CertFiles, tmp_path: Path, files: tuple[str, str | None], message: str
) -> None:
    def path(name: str) -> str:
        return str(tmp_path / "nope.pem") if name == "missing" else str(getattr(certs, name))

    argv = ["serve", "--port", "0", "--database-url", f"sqlite:///{tmp_path}/db.sqlite"]
    argv += ["--tls-cert", path(files[0])]
    if files[1] is not None:
        argv += ["--tls-key", path(files[1])]
    result = CliRunner().invoke(service_cli, argv, env={"OUTPOST_TLS_KEY": ""})
    assert result.exit_code == 1, result.output
    assert message in result.output


def test_endpoint_tls_keys_are_validated() -> None:
    config = parse_config({"amqp_ca_file": "~/ca.pem", "service_ca_file": "/etc/ca.pem"})
    assert config.amqp_ca_file == str(Path("~/ca.pem").expanduser())
    assert config.service_ca_file == "/etc/ca.pem"
    with pytest.raises(ConfigurationError, match=r"amqp_cert_file.*absolute path"):
        parse_config({"amqp_cert_file": "client.pem"})
    with pytest.raises(ConfigurationError, match="does not exist"):
        http_verify("/nonexistent/ca.pem")


# ---------------------------------------------------------------------------- AMQPS broker
class TlsBroker:
    def __init__(self, root: Path, port: int, tls_port: int, certs: CertFiles) -> None:
        self.root, self.port, self.tls_port, self.certs = root, port, tls_port, certs

    def url(self, host: str = "127.0.0.1") -> str:
        return f"amqps://guest:guest@{host}:{self.tls_port}/"

    def do(self, command: str) -> str:
        run = subprocess.run(
            ["bash", str(RABBITMQ_PRIVATE), command, str(self.root), str(self.port)],
            capture_output=True,
            text=True,
            timeout=120,
            env={
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                "RABBITMQ_PRIVATE_MGMT": "0",
                "RABBITMQ_PRIVATE_TLS_PORT": str(self.tls_port),
                "RABBITMQ_PRIVATE_TLS_DIR": str(self.certs.ca_cert.parent),
                "RABBITMQ_PRIVATE_TLS_VERIFY": "verify_peer",
            },
        )
        assert run.returncode == 0, f"rabbitmq_private.sh {command}: {run.stdout}{run.stderr}"
        return run.stdout


@pytest.fixture(scope="module")
def tls_broker(certs: CertFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    """A private RabbitMQ node (~5 s to start) whose AMQPS listener demands a client
    certificate signed by the test CA (``ssl_options.verify = verify_peer``)."""
    ensure_private_rabbitmq()
    port = private_broker_port(extra_offsets=(5000,))
    broker = TlsBroker(tmp_path_factory.mktemp("rabbitmq-tls"), port, port + 5000, certs)
    broker.do("start")
    yield broker
    broker.do("kill")


def test_endpoint_connects_over_amqps_with_the_ca(tls_broker: TlsBroker, certs: CertFiles) -> None:
    full = TlsFiles(str(certs.ca_cert), str(certs.client_cert), str(certs.client_key))
    connection = connect(tls_broker.url(), "tls-test", full)
    try:
        assert connection.is_open
        channel = connection.channel()
        channel.queue_declare("tls-probe", exclusive=True)
    finally:
        connection.close()
    # The host name is checked: "localhost" is in the certificate, "vm" (same address) is not.
    connect(tls_broker.url("localhost"), "tls-test", full).close()
    with pytest.raises(BrokerError, match=r"certificate verify failed.*amqp_ca_file"):
        connect(tls_broker.url("vm"), "tls-test", full)


def test_endpoint_refuses_an_untrusted_broker_clearly(
    tls_broker: TlsBroker, certs: CertFiles
) -> None:
    client = (str(certs.client_cert), str(certs.client_key))
    with pytest.raises(BrokerError, match=r"certificate verify failed.*amqp_ca_file") as plain:
        connect(tls_broker.url(), "tls-test", TlsFiles("", *client))  # system store only
    assert ":guest@" not in str(plain.value)  # the password is redacted
    with pytest.raises(BrokerError, match="certificate verify failed"):
        connect(tls_broker.url(), "tls-test", TlsFiles(str(certs.other_ca_cert), *client))
    with pytest.raises(BrokerError, match=r"client certificate.*amqp_cert_file"):
        connect(tls_broker.url(), "tls-test", TlsFiles(str(certs.ca_cert)))


def test_service_publisher_publishes_over_amqps(tls_broker: TlsBroker, certs: CertFiles) -> None:
    tls = TlsFiles(str(certs.ca_cert), str(certs.client_cert), str(certs.client_key))
    topology = Topology(f"tls-{uuid.uuid4().hex[:6]}")
    endpoint_id = str(uuid.uuid4())
    publisher = Publisher(tls_broker.url(), topology, attempts=1, tls=tls)
    task = TaskEnvelope(
        task_id=str(uuid.uuid4()),
        function_id="f",
        function=serialize(cube),
        args=serialize(((2,), {})),
        endpoint_id=endpoint_id,
    )
    try:
        publisher.declare_endpoint_queue(endpoint_id)
        publisher.publish_tasks([task])  # returns once RabbitMQ confirmed it
    finally:
        publisher.close()
    connection = connect(tls_broker.url(), "tls-test", tls)
    try:
        method, _properties, body = connection.channel().basic_get(
            topology.task_queue(endpoint_id), auto_ack=True
        )
        assert method is not None and task.task_id.encode() in body
    finally:
        connection.close()

    untrusting = Publisher(
        tls_broker.url(),
        topology,
        attempts=1,
        tls=TlsFiles("", str(certs.client_cert), str(certs.client_key)),
    )
    with pytest.raises(
        ServiceBrokerError, match=r"certificate verify failed.*OUTPOST_AMQP_CA_FILE"
    ):
        untrusting.publish_tasks([task])
    untrusting.close()


def test_round_trip_with_tls_on_every_hop(
    tls_broker: TlsBroker,
    certs: CertFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SDK -HTTPS-> service -AMQPS-> endpoint daemon -AMQPS-> service (ingest), the CA given
    by OUTPOST_CA_BUNDLE (HTTPS) and the AMQP file settings of each side."""
    client_files = ("--amqp-cert-file", str(certs.client_cert))
    client_files += ("--amqp-key-file", str(certs.client_key))
    service = start_service(
        tmp_path / "service",
        f"sqlite:///{tmp_path}/outpost.db",
        amqp_url=tls_broker.url(),
        extra=(
            *("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)),
            *("--broker-auth", "shared", "--amqp-ca-file", str(certs.ca_cert), *client_files),
        ),
    )
    try:
        monkeypatch.setenv("OUTPOST_CA_BUNDLE", str(certs.ca_cert))
        env = service.env(tmp_path / "endpoint")
        name = f"tls{uuid.uuid4().hex[:6]}"
        checked([cli("outpost-endpoint"), "configure", name], env, 60)
        config_path = tmp_path / "endpoint" / "endpoints" / name / "config.yaml"
        config = yaml.safe_load(config_path.read_text())
        config["engine"] = {"type": "process-pool", "max_workers": 1}
        config["amqp_cert_file"] = str(certs.client_cert)
        config["amqp_key_file"] = str(certs.client_key)
        config_path.write_text(yaml.safe_dump(config))
        endpoint = RunningEndpoint(name=name, endpoint_id="", home=tmp_path / "endpoint", env=env)
        refused = endpoint.run("start", name, check=False)
        assert refused.returncode != 0
        assert "certificate verify failed" in refused.stdout + refused.stderr
        assert "amqp_ca_file" in refused.stdout + refused.stderr

        config["amqp_ca_file"] = str(certs.ca_cert)
        config_path.write_text(yaml.safe_dump(config))
        endpoint.endpoint_id = endpoint.start()
        try:
            client = Client(service.url, service.token)  # the CA from OUTPOST_CA_BUNDLE
            with Executor(endpoint_id=endpoint.endpoint_id, client=client) as ex:
                assert ex.submit(cube, 5).result(timeout=60) == 125
        finally:
            endpoint.run("stop", name, check=False)
    finally:
        service.process.terminate()
        assert service.process.wait(30) == 0  # cheroot stops cleanly on SIGTERM too


def test_amqp_plain_urls_ignore_the_tls_files(certs: CertFiles) -> None:
    from outpost_service.broker.connection import target

    def parameters(url: str, tls: TlsFiles) -> pika.URLParameters:
        return target(url, tls).parameters()

    assert parameters("amqp://h/", TlsFiles(str(certs.ca_cert))).ssl_options is None
    params = parameters("amqps://h/", TlsFiles(str(certs.ca_cert)))
    assert isinstance(params.ssl_options, pika.SSLOptions)
    assert params.ssl_options.context.check_hostname
    assert params.ssl_options.server_hostname == "h"
    # pika's own ssl_options query argument (older configs) is left to pika: the TLS files,
    # even a missing one, are not used.
    legacy = f"amqps://h/%2F?ssl_options={quote(repr({'ca_certs': str(certs.ca_cert)}))}"
    assert parameters(legacy, TlsFiles("/nonexistent.pem")).ssl_options is not None
    with pytest.raises(ConfigurationError, match="does not exist"):
        parameters("amqps://h/", TlsFiles("/nonexistent.pem"))
