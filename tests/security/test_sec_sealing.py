"""End-to-end encryption (``Executor(encrypt=True)``): sealed boxes, and the whole stack.

Unit: round trips; a wrong key, altered bytes, a truncated payload and a payload moved to
another task (other associated data) are refused with :class:`SealingError`.  End to end (a real
service on SQLite, the real endpoint daemon, the shared RabbitMQ): a marker string passed as an
argument, returned in a result and raised in an exception never appears in the service's
database files, while the client gets the value and the original exception class; a control
task sent without encryption does leave its marker there (so the check can fail); a fresh
process with the same OUTPOST_HOME reopens the results, one without the key file gets a clear
error.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from outpost import Client
from outpost.errors import ConfigurationError, SealingError
from outpost.executor import Executor
from outpost.protocol import TaskEnvelope, TaskState, deserialize, serialize, serialize_function
from outpost.protocol.sealing import (
    RESULT_KEY_FIELD,
    args_context,
    generate_private_key,
    is_sealed,
    load_or_create_key,
    open_sealed,
    public_key_from_text,
    public_key_text,
    result_context,
    seal,
)
from outpost_endpoint.execution import run_task
from outpost_endpoint.sealed import SEALING_KEY_ENV

from ..e2e.stack import RunningEndpoint, RunningService, make_endpoint, start_service, stop_service

# ----------------------------------------------------------------------------- unit


def test_round_trip_and_refusals() -> None:
    key = generate_private_key()
    public = public_key_from_text(public_key_text(key))
    sealed = seal(b"hello", public, result_context("t1"))
    assert is_sealed(sealed) and b"hello" not in sealed
    assert open_sealed(sealed, key, result_context("t1")) == b"hello"
    assert seal(b"hello", public, b"x") != seal(b"hello", public, b"x")  # fresh key per message

    with pytest.raises(SealingError, match="another key"):
        open_sealed(sealed, generate_private_key(), result_context("t1"))
    with pytest.raises(SealingError, match="another task"):  # moved to another task
        open_sealed(sealed, key, result_context("t2"))
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(SealingError, match="altered"):
        open_sealed(bytes(tampered), key, result_context("t1"))
    with pytest.raises(SealingError, match="truncated"):
        open_sealed(sealed[:40], key, result_context("t1"))
    with pytest.raises(SealingError, match="not a sealed payload"):
        open_sealed(b"\x00OP1Pplain", key, b"")


def test_argument_context_binds_the_result_key() -> None:
    key, client = generate_private_key(), public_key_text(generate_private_key())
    sealed = seal(b"args", key.public_key(), args_context("ep", "fn", "g", client))
    assert open_sealed(sealed, key, args_context("ep", "fn", "g", client)) == b"args"
    swapped = public_key_text(generate_private_key())  # a forwarder swapping in its own key
    with pytest.raises(SealingError):
        open_sealed(sealed, key, args_context("ep", "fn", "g", swapped))
    with pytest.raises(SealingError):
        open_sealed(sealed, key, args_context("other-ep", "fn", "g", client))


def test_bad_public_keys_and_key_files(tmp_path: Path) -> None:
    with pytest.raises(SealingError, match="base64"):
        public_key_from_text("not base64!")
    with pytest.raises(SealingError, match="32-byte"):
        public_key_from_text("AAAA")
    path = tmp_path / "keys" / "k"
    key = load_or_create_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert public_key_text(load_or_create_key(path)) == public_key_text(key)
    path.write_bytes(b"short")
    with pytest.raises(SealingError, match="not an X25519 private key"):
        load_or_create_key(path)


# ----------------------------------------------------------------------------- end to end

MARKER = "sealed-marker-q8z3"
CONTROL = "plain-control-k2v7"


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningService, RunningEndpoint]]:
    home = tmp_path_factory.mktemp("sealing-service")
    service = start_service(home, f"sqlite:///{home}/outpost.db")
    endpoint = make_endpoint(service, tmp_path_factory.mktemp("sealing-endpoint"), "sealed")
    yield service, endpoint
    endpoint.run("stop", endpoint.name, check=False)
    stop_service(service)


def database_bytes(service: RunningService) -> bytes:
    files = sorted(service.home.glob("outpost.db*"))
    assert files, f"no database files in {service.home}"
    return b"".join(path.read_bytes() for path in files)


def reload_elsewhere(
    service: RunningService, home: Path, group: str, encrypt: bool
) -> dict[str, str]:
    """In a fresh process with OUTPOST_HOME=home: reload the group, describe each outcome."""
    script = f"""
import json
from outpost.executor import Executor
with Executor(task_group_id={group!r}, encrypt={encrypt!r}) as ex:
    out = {{}}
    for f in ex.reload_tasks():
        try:
            out[f.task_id] = "value:" + repr(f.result(timeout=60))
        except Exception as exc:
            out[f.task_id] = type(exc).__name__ + ":" + str(exc)
print(json.dumps(out))
"""
    run = subprocess.run(
        [sys.executable, "-c", script],
        env=service.env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return dict(json.loads(run.stdout.strip().splitlines()[-1]))


def test_sealed_tasks_through_the_stack(
    stack: tuple[RunningService, RunningEndpoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, endpoint = stack
    client_home = tmp_path / "client"
    client = Client(url=service.url, token=service.token)
    metadata = client.get_endpoint(endpoint.endpoint_id)["metadata"]
    assert public_key_from_text(metadata["sealing_public_key"])

    monkeypatch.setenv("OUTPOST_HOME", str(client_home))
    with Executor(endpoint.endpoint_id, client=client, encrypt=True) as ex:
        upper = ex.submit(str.upper, MARKER)
        failing = ex.submit(int, MARKER)
        assert upper.result(timeout=120) == MARKER.upper()
        with pytest.raises(ValueError, match=MARKER) as raised:
            failing.result(timeout=120)
        assert type(raised.value) is ValueError
        group = ex.task_group_id
    with Executor(endpoint.endpoint_id, client=client) as plain:
        assert plain.submit(str.upper, CONTROL).result(timeout=120) == CONTROL.upper()
    assert (client_home / "sealing_keys" / group).stat().st_mode & 0o777 == 0o600

    stored = database_bytes(service)
    assert CONTROL.encode() in stored  # the check can fail: plain tasks are stored readable
    for secret in (MARKER, MARKER.upper()):
        assert secret.encode() not in stored, f"{secret!r} stored in plaintext"

    same_home = reload_elsewhere(service, client_home, group, encrypt=True)
    assert same_home == {
        upper.task_id: f"value:{MARKER.upper()!r}",
        failing.task_id: f"ValueError:invalid literal for int() with base 10: {MARKER!r}",
    }
    # A retry copies the sealed arguments (their associated data names no task id); the
    # endpoint seals the new attempt's error for the new task id.
    (pair,) = client.retry_task_group(group)
    assert pair["old"] == failing.task_id
    retried = reload_elsewhere(service, client_home, group, encrypt=True)
    assert retried[pair["new"]] == same_home[failing.task_id]

    for encrypt in (True, False):
        other = reload_elsewhere(service, tmp_path / "stranger", group, encrypt=encrypt)
        assert set(other) == {upper.task_id, pair["new"]}
        for outcome in other.values():
            assert outcome.startswith("SealingError:"), outcome
            assert MARKER not in outcome and MARKER.upper() not in outcome


def test_endpoint_without_a_key_is_refused_at_submit(
    stack: tuple[RunningService, RunningEndpoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, _ = stack
    monkeypatch.setenv("OUTPOST_HOME", str(tmp_path))
    client = Client(url=service.url, token=service.token)
    old = client.register_endpoint(f"old-{uuid.uuid4().hex[:6]}", metadata={"hostname": "x"})
    service.endpoint_ids.append(old["endpoint_id"])
    with (
        Executor(old["endpoint_id"], client=client, encrypt=True) as ex,
        pytest.raises(ConfigurationError, match=r"publishes no sealing key.*restart"),
    ):
        ex.submit(str.upper, "x")


# ----------------------------------------------------------------------------- the worker side


def sealed_task(endpoint_public: str, client_key: str, args: bytes) -> TaskEnvelope:
    context = args_context("ep", "fn", "group", client_key)
    return TaskEnvelope(
        task_id=str(uuid.uuid4()),
        function_id="fn",
        function=serialize_function(str.upper),
        args=seal(args, public_key_from_text(endpoint_public), context),
        endpoint_id="ep",
        task_group_id="group",
        resource_specification={RESULT_KEY_FIELD: client_key},
    )


def test_worker_opens_arguments_and_seals_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint_key = load_or_create_key(tmp_path / "sealing_key")
    client_key = generate_private_key()
    task = sealed_task(
        public_key_text(endpoint_key), public_key_text(client_key), serialize(((MARKER,), {}))
    )

    monkeypatch.delenv(SEALING_KEY_ENV, raising=False)
    result = run_task(task)  # a worker that did not inherit the endpoint's environment
    assert result.state is TaskState.FAILED and result.error is not None
    assert result.error.reason == "serialization"
    assert SEALING_KEY_ENV in result.error.message

    monkeypatch.setenv(SEALING_KEY_ENV, str(tmp_path / "sealing_key"))
    result = run_task(task)
    assert result.state is TaskState.SUCCESS and is_sealed(result.value)
    opened = open_sealed(result.value or b"", client_key, result_context(task.task_id))
    assert deserialize(opened) == MARKER.upper()

    other = tmp_path / "other_key"
    load_or_create_key(other)
    monkeypatch.setenv(SEALING_KEY_ENV, str(other))  # sealed for another endpoint
    result = run_task(task)
    assert result.state is TaskState.FAILED and result.error is not None
    assert result.error.reason == "serialization"
    assert "cannot open the end-to-end encrypted task" in result.error.message
