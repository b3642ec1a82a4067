"""The real thing: ``outpost-service serve --port 0`` as a separate process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from outpost.protocol import ResultEnvelope, TaskEnvelope, TaskState, serialize, serialize_function
from outpost_service.store import schema

from .conftest import AMQP_URL, b64, delete_topology
from .test_tasks import take

SERVICE = str(Path(sys.executable).parent / "outpost-service")


@dataclass
class Server:
    """A service process and what it printed."""

    process: subprocess.Popen[str]
    env: dict[str, str]
    url: str = ""
    output: list[str] = field(default_factory=list)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SERVICE, *args], env=self.env, capture_output=True, text=True, timeout=60, check=True
        )

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        return self.process.wait(30)


def start(args: list[str], env: dict[str, str], ready: str) -> Server:
    """Start ``outpost-service ARGS`` and wait for a line matching ``ready`` (group 1 = url)."""
    process = subprocess.Popen(
        [SERVICE, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    server = Server(process, env)
    seen = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            server.output.append(line)
            match = re.search(ready, line)
            if match and not seen.is_set():
                server.url = match.group(1) if match.groups() else ""
                seen.set()
        seen.set()  # the process ended

    threading.Thread(target=pump, daemon=True).start()
    if not seen.wait(60) or process.poll() is not None:
        process.kill()
        pytest.fail(f"outpost-service {args} did not start:\n" + "".join(server.output))
    return server


def service_env(database_url: str, amqp_prefix: str, home: Path) -> dict[str, str]:
    return dict(
        os.environ,
        OUTPOST_HOME=str(home),
        OUTPOST_DATABASE_URL=database_url,
        OUTPOST_AMQP_URL=AMQP_URL,
        OUTPOST_AMQP_PREFIX=amqp_prefix,
        PYTHONUNBUFFERED="1",
    )


def cleanup(servers: list[Server], database_url: str, amqp_prefix: str) -> None:
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(30)
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        endpoint_ids = list(conn.execute(sa.select(schema.endpoints.c.endpoint_id)).scalars())
    engine.dispose()
    delete_topology(amqp_prefix, endpoint_ids)


@pytest.fixture
def server(database_url: str, amqp_prefix: str, tmp_path: Path) -> Iterator[Server]:
    env = service_env(database_url, amqp_prefix, tmp_path / "home")
    running = start(["serve", "--port", "0"], env, r"outpost-service listening on (http://\S+)")
    yield running
    cleanup([running], database_url, amqp_prefix)


def api(server: Server, token: str) -> Any:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"

    def call(method: str, path: str, body: Any = None) -> Any:
        response = session.request(method, f"{server.url}{path}", json=body, timeout=90)
        assert response.status_code == 200, response.text
        return response.json()

    return call


def test_running_server_round_trip(server: Server, amqp_prefix: str, amqp_channel: Any) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url) and not server.url.endswith(":0")
    assert requests.get(f"{server.url}/health", timeout=10).json()["status"] == "ok"
    refused = requests.post(f"{server.url}/v1/endpoints", json={"name": "ep"}, timeout=10)
    assert refused.status_code == 401
    assert "create-user" in refused.json()["error"]["message"]

    token = json.loads(server.cli("create-user", "carol", "--json").stdout)["token"]
    plain = server.cli("create-user", "carol").stdout
    assert re.fullmatch(r"token: op_\S+\n", plain)
    call = api(server, token)
    registration = call("POST", "/v1/endpoints", {"name": "laptop"})
    endpoint_id = registration["endpoint_id"]
    queue = registration["amqp"]["task_queue"]  # tagged: not guessable from the id
    assert re.fullmatch(rf"{re.escape(amqp_prefix)}\.tasks\.{endpoint_id}\.[0-9a-f]{{32}}", queue)
    function_id = call("POST", "/v1/functions", {"function": b64(serialize_function(pow))})[
        "function_id"
    ]
    task = {
        "function_id": function_id,
        "endpoint_id": endpoint_id,
        "args": b64(serialize(((2, 10), {}))),
    }
    (task_id,) = call("POST", "/v1/tasks", {"tasks": [task]})["task_ids"]

    ((_, body),) = take(amqp_channel, queue, 1)
    assert TaskEnvelope.from_bytes(body).task_id == task_id
    result = ResultEnvelope(task_id, endpoint_id, TaskState.SUCCESS, value=serialize(1024))
    amqp_channel.basic_publish(f"{amqp_prefix}.results", f"{endpoint_id}.result", result.to_bytes())
    answer = call("POST", "/v1/results", {"task_ids": [task_id], "wait": 60})
    assert [ResultEnvelope.from_dict(r) for r in answer["results"]] == [result]

    assert server.stop() == 0, "".join(server.output)
    assert any("stopped" in line for line in server.output)


def test_serve_without_ingest_plus_a_separate_ingest(
    amqp_prefix: str, amqp_channel: Any, tmp_path: Path
) -> None:
    """``serve --no-ingest`` + ``ingest``: long-polls see results stored by another process."""
    database_url = f"sqlite:///{tmp_path}/split.db"
    env = service_env(database_url, amqp_prefix, tmp_path / "home")
    subprocess.run([SERVICE, "init-db"], env=env, check=True, timeout=60, capture_output=True)
    servers: list[Server] = []
    try:
        web = start(["serve", "--port", "0", "--no-ingest"], env, r"listening on (http://\S+)")
        servers.append(web)
        consumer = start(["ingest"], env, r"ingest consuming")
        servers.append(consumer)
        token = json.loads(web.cli("create-user", "dave", "--json").stdout)["token"]
        call = api(web, token)
        endpoint_id = call("POST", "/v1/endpoints", {"name": "split"})["endpoint_id"]
        function_id = call("POST", "/v1/functions", {"function": b64(serialize_function(abs))})[
            "function_id"
        ]
        task = {
            "function_id": function_id,
            "endpoint_id": endpoint_id,
            "args": b64(serialize(((-5,), {}))),
        }
        (task_id,) = call("POST", "/v1/tasks", {"tasks": [task]})["task_ids"]
        result = ResultEnvelope(task_id, endpoint_id, TaskState.SUCCESS, value=serialize(5))
        amqp_channel.basic_publish(
            f"{amqp_prefix}.results", f"{endpoint_id}.result", result.to_bytes()
        )
        answer = call("POST", "/v1/results", {"task_ids": [task_id], "wait": 60})
        assert [ResultEnvelope.from_dict(r) for r in answer["results"]] == [result]
        assert consumer.stop(signal.SIGINT) == 0, "".join(consumer.output)
        assert web.stop(signal.SIGINT) == 0, "".join(web.output)
    finally:
        cleanup(servers, database_url, amqp_prefix)
