"""Pinned endpoint sealing keys (``Executor(encrypt=True)``; :mod:`outpost.endpoint_keys`).

A real service on SQLite and the real endpoint daemon.  The first sealed submit pins the
endpoint's key fingerprint (the one the daemon logs) in ``$OUTPOST_HOME/known_endpoints``.  A
service that then hands out another key -- its stored metadata rewritten, as a malicious
operator would -- is refused before anything is sealed or submitted, with both fingerprints
and the ways out in the message.  A legitimately rotated key (the endpoint's ``sealing_key``
replaced, the daemon restarted) is refused likewise until ``outpost endpoints trust ID
--fingerprint ...`` accepts it (a wrong ``--fingerprint`` pins nothing); then tasks run again.
``Executor(endpoint_key=...)`` pins explicitly and leaves the file alone.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from outpost import Client
from outpost.cli import cli
from outpost.endpoint_keys import check_endpoint_key, known_endpoints_path, read_pins
from outpost.errors import ConfigurationError, EndpointKeyChangedError, NotFoundError
from outpost.executor import Executor
from outpost.protocol.sealing import (
    generate_private_key,
    key_fingerprint,
    public_key_from_text,
    public_key_text,
)
from outpost_service.store.schema import endpoints

from ..e2e.stack import make_endpoint, start_service, stop_service


def key_fingerprint_text(text: str) -> str:
    return key_fingerprint(public_key_from_text(text))


def logged_fingerprints(log: Path) -> list[str]:
    return re.findall(r"sealing key fingerprint (sha256:[0-9a-f]{64})", log.read_text())


def submit_one(client: Client, endpoint_id: str, **options: object) -> str:
    with Executor(endpoint_id, client=client, encrypt=True, **options) as ex:  # type: ignore[arg-type]
        return str(ex.submit(str.upper, "pin").result(timeout=120))


def trust(service_url: str, token: str, *args: str) -> tuple[int, str]:
    run = CliRunner().invoke(
        cli, ["--url", service_url, "--token", token, "endpoints", "trust", *args]
    )
    return run.exit_code, run.output


def test_pinned_key_refuses_a_substituted_key_and_trust_accepts_a_rotated_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = start_service(tmp_path / "service", f"sqlite:///{tmp_path}/service/outpost.db")
    endpoint = make_endpoint(service, tmp_path / "endpoint", "pinned")
    log = endpoint.home / "endpoints" / endpoint.name / "endpoint.log"
    client = Client(url=service.url, token=service.token)
    monkeypatch.setenv("OUTPOST_HOME", str(tmp_path / "client"))
    eid = endpoint.endpoint_id
    try:
        # first use pins the key the daemon logged
        assert submit_one(client, eid) == "PIN"
        [first] = logged_fingerprints(log)
        assert read_pins() == {eid: first}

        # a service handing out its own key is refused, nothing is submitted
        attacker = public_key_text(generate_private_key())
        engine = sa.create_engine(service.database_url)
        with engine.begin() as conn:
            metadata = conn.execute(
                sa.select(endpoints.c.metadata).where(endpoints.c.endpoint_id == eid)
            ).scalar_one()
            conn.execute(
                endpoints.update()
                .where(endpoints.c.endpoint_id == eid)
                .values(metadata={**metadata, "sealing_public_key": attacker})
            )
        engine.dispose()
        with (
            Executor(eid, client=client, encrypt=True) as ex,
            pytest.raises(EndpointKeyChangedError) as refused,
        ):
            ex.submit(str.upper, "never")
        message = str(refused.value)
        for part in (first, key_fingerprint_text(attacker), f"outpost endpoints trust {eid}"):
            assert part in message
        with pytest.raises(NotFoundError):  # nothing was stored: the group does not exist
            client.get_task_group(ex.task_group_id)
        assert read_pins() == {eid: first}

        # the endpoint's key is rotated: refused until trusted with the right fingerprint
        endpoint.stop()
        (endpoint.home / "endpoints" / endpoint.name / "sealing_key").unlink()
        endpoint.start()
        second = logged_fingerprints(log)[-1]
        assert second != first
        with pytest.raises(EndpointKeyChangedError, match=second):
            submit_one(client, eid)
        code, output = trust(service.url, service.token, eid, "--fingerprint", first)
        assert code == 1 and "nothing was pinned" in output
        assert read_pins() == {eid: first}
        code, output = trust(service.url, service.token, eid, "--fingerprint", second)
        assert code == 0, output
        assert f"pinned {second}" in output and f"replacing {first}" in output
        assert read_pins() == {eid: second}
        assert submit_one(client, eid) == "PIN"

        # an explicit pin: checked against the offered key, the file neither read nor written
        with pytest.raises(EndpointKeyChangedError, match="endpoint_key"):
            submit_one(client, eid, endpoint_key=first)
        monkeypatch.setenv("OUTPOST_HOME", str(tmp_path / "explicit"))
        assert submit_one(client, eid, endpoint_key=second) == "PIN"
        assert submit_one(client, eid, endpoint_key={eid: second}) == "PIN"
        assert not known_endpoints_path().exists()
    finally:
        client.close()
        endpoint.run("stop", endpoint.name, check=False)
        stop_service(service)


def test_pin_file_errors_and_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTPOST_HOME", str(tmp_path))
    key = public_key_text(generate_private_key())
    check_endpoint_key("ep-1", key)  # first use: pinned
    check_endpoint_key("ep-1", key)  # same key: fine
    assert read_pins() == {"ep-1": key_fingerprint_text(key)}
    with known_endpoints_path().open("a") as file:
        file.write("ep-2 md5:abc\n")
    with pytest.raises(ConfigurationError, match=r"line 3 .*fix or delete that line"):
        check_endpoint_key("ep-1", key)
    with pytest.raises(ConfigurationError, match="needs encrypt=True"):
        Executor("ep-1", client=Client(url="http://127.0.0.1:1", token="t"), endpoint_key=key)
