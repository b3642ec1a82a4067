"""Task signatures (outpost.protocol.signing) and key pinning, without a broker."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from outpost.protocol import CancelRequest, TaskEnvelope, decode_message
from outpost.protocol.signing import (
    CLOCK_SKEW,
    SignatureError,
    Signer,
    Verifier,
    canonical,
    new_private_key,
)
from outpost_endpoint.amqp.connection import AmqpSettings
from outpost_endpoint.errors import RegistrationError
from outpost_endpoint.service_link import pin_signing_key

EP = "0f2d6a52-8d0a-4a43-9d9f-7d5b1bb2c8f1"
OTHER = "9a1c2b3d-0000-4000-8000-000000000000"


def task(endpoint_id: str = EP) -> TaskEnvelope:
    return TaskEnvelope("t-1", "f-1", b"function", b"args", endpoint_id, created_at=1.5)


@pytest.fixture
def signer() -> Signer:
    return Signer(new_private_key())


def test_signed_task_verifies_and_decodes(signer: Signer) -> None:
    body = signer.signed_bytes(task())
    Verifier(signer.public_key).verify(body, EP)
    decoded = decode_message(body)
    assert isinstance(decoded, TaskEnvelope) and decoded.sig and decoded.issued_at
    # the decoded envelope re-encodes to a body that still verifies (journal replays use it)
    Verifier(signer.public_key).verify(decoded.to_bytes(), EP)


def test_unsigned_messages_stay_as_before_and_decode() -> None:
    data = json.loads(task().to_bytes())
    assert "sig" not in data and "issued_at" not in data
    assert decode_message(task().to_bytes()) == task()


@pytest.mark.parametrize(
    "field, value",
    [("args", "dGFtcGVyZWQ="), ("function", "ZXZpbA=="), ("task_id", "t-2"), ("issued_at", 2.0)],
)
def test_any_changed_field_breaks_the_signature(signer: Signer, field: str, value: object) -> None:
    data = json.loads(signer.signed_bytes(task()))
    data[field] = value
    with pytest.raises(SignatureError, match="does not match"):
        Verifier(signer.public_key).verify(data, EP)


def test_endpoint_id_is_signed(signer: Signer) -> None:
    body = signer.signed_bytes(task(OTHER))
    with pytest.raises(SignatureError, match="signed for endpoint"):
        Verifier(signer.public_key).verify(body, EP)
    data = json.loads(body)
    data["endpoint_id"] = EP  # re-addressing B's task to A
    with pytest.raises(SignatureError, match="does not match"):
        Verifier(signer.public_key).verify(data, EP)


def test_another_key_is_refused(signer: Signer) -> None:
    forged = Signer(new_private_key()).signed_bytes(task())
    with pytest.raises(SignatureError, match="does not match"):
        Verifier(signer.public_key).verify(forged, EP)


def test_unsigned_or_malformed_signature_is_refused(signer: Signer) -> None:
    verifier = Verifier(signer.public_key)
    with pytest.raises(SignatureError, match="not signed"):
        verifier.verify(task().to_bytes(), EP)
    data = json.loads(signer.signed_bytes(task()))
    for bad in ("not base64!", "AAAA", 12):
        with pytest.raises(SignatureError):
            verifier.verify({**data, "sig": bad}, EP)
    with pytest.raises(SignatureError, match="JSON"):
        verifier.verify(b"\xff", EP)


def test_age_window_and_clock_skew(signer: Signer) -> None:
    verifier = Verifier(signer.public_key, max_age=3600)
    now = time.time()
    old = signer.sign(task().to_dict(), now=now - 3601)
    with pytest.raises(SignatureError, match="window of 3600 s"):
        verifier.verify(old, EP, now=now)
    verifier.verify(signer.sign(task().to_dict(), now=now - 3599), EP, now=now)
    future = signer.sign(task().to_dict(), now=now + CLOCK_SKEW + 60)
    with pytest.raises(SignatureError, match="future"):
        verifier.verify(future, EP, now=now)


def test_cancel_requests_are_signed_too(signer: Signer) -> None:
    body = signer.signed_bytes(CancelRequest(EP, ["t-1"]))
    Verifier(signer.public_key).verify(body, EP)
    data = json.loads(body)
    data["task_ids"] = ["t-1", "t-2"]
    with pytest.raises(SignatureError):
        Verifier(signer.public_key).verify(data, EP)


def test_canonical_form_ignores_key_order_and_sig() -> None:
    assert canonical({"b": 1, "a": [1, 2], "sig": "x"}) == b'{"a":[1,2],"b":1}'


def test_bad_keys_are_clear_errors() -> None:
    with pytest.raises(SignatureError, match="32 bytes"):
        Verifier("AAAA")
    with pytest.raises(SignatureError, match="not base64"):
        Signer("***")


def _settings(key: str | None) -> AmqpSettings:
    return AmqpSettings("amqp://h/", "x.tasks", "x.tasks.e", "x.results", "e.result", "e.status",
                        task_signing_key=key)  # fmt: skip


def test_signing_key_is_pinned_on_first_use(signer: Signer, tmp_path: Path) -> None:
    info = tmp_path / "endpoint.json"
    first = pin_signing_key({}, _settings(signer.public_key), info, "http://svc")
    assert first.task_signing_key == signer.public_key
    known = {"task_signing_key": signer.public_key}
    # a service that stops sending its key does not switch verification off
    assert pin_signing_key(known, _settings(None), info, "http://svc").task_signing_key
    other = Signer(new_private_key()).public_key
    with pytest.raises(RegistrationError, match="pins key") as refused:
        pin_signing_key(known, _settings(other), info, "http://svc")
    assert str(info) in str(refused.value)


def test_amqps_urls_mean_tls_with_the_host_checked() -> None:
    """The endpoint connects with pika.URLParameters: ``amqps://`` is TLS against the system
    CAs (or pika's ``ssl_options`` query argument); a plain AMQP port refuses the handshake."""
    import ssl

    import pika

    from outpost_endpoint.amqp.connection import connect

    params = pika.URLParameters("amqps://u:p@broker.example.org/%2F")
    assert params.ssl_options is not None and params.port == 5671
    with pytest.raises(ssl.SSLError):  # the TLS handshake meets a plaintext AMQP port
        connect("amqps://guest:guest@127.0.0.1:5672/", "tls-probe")


def test_configured_amqp_url_keeps_the_issued_credentials() -> None:
    issued = {
        "url": "amqp://outpost-ep-1:s3cr%2Ft@internal:5672/",
        "task_exchange": "x.tasks",
        "task_queue": "x.tasks.e",
        "result_exchange": "x.results",
        "result_routing_key": "e.result",
        "status_routing_key": "e.status",
    }
    mine = AmqpSettings.from_registration(issued, url_override="amqps://broker.site:5671/")
    assert mine.url == "amqps://outpost-ep-1:s3cr%2Ft@broker.site:5671/"
    explicit = AmqpSettings.from_registration(issued, url_override="amqp://me:pw@h/")
    assert explicit.url == "amqp://me:pw@h/"
