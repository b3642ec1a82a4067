"""A local Outpost stack as real processes: a service, its users, and endpoints.

Used by the end-to-end tests and the benchmarks.  The service runs as ``outpost-service serve
--port 0`` (the printed address is parsed) on its own AMQP prefix, so parallel runs never share
queues; endpoints are started with the real ``outpost-endpoint`` CLI, which daemonizes.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..broker_cleanup import delete_topology

BIN = Path(sys.executable).parent
AMQP_URL = os.environ.get("OUTPOST_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def cli(name: str) -> str:
    """The path of one of Outpost's console scripts in this interpreter's environment."""
    return str(BIN / name)


@dataclass
class RunningService:
    url: str
    token: str
    home: Path
    database_url: str
    amqp_prefix: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    endpoint_ids: list[str] = field(default_factory=list)

    def env(self, home: Path | None = None) -> dict[str, str]:
        """The environment of a user of this service (SDK and endpoint CLI)."""
        env = dict(os.environ)
        env.update(
            OUTPOST_URL=self.url,
            OUTPOST_TOKEN=self.token,
            OUTPOST_HOME=str(home or self.home),
            PYTHONUNBUFFERED="1",
        )
        return env

    def create_user(self, name: str) -> str:
        run = checked(
            [cli("outpost-service"), "create-user", name, "--json"],
            {**self.env(), "OUTPOST_DATABASE_URL": self.database_url},
            60,
        )
        return str(json.loads(run.stdout)["token"])


def checked(
    argv: list[str], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run a command; fail with its output if it exits non-zero."""
    run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if run.returncode != 0:
        raise AssertionError(f"{argv} exited {run.returncode}:\n{run.stdout}\n{run.stderr}")
    return run


def start_service(
    home: Path,
    database_url: str,
    user: str | None = "alice",
    *,
    amqp_url: str = AMQP_URL,
    prefix: str | None = None,
    port: int = 0,
    extra: tuple[str, ...] = (),
    env_extra: dict[str, str] | None = None,
) -> RunningService:
    """Start ``outpost-service serve`` and create ``user`` (if given); returns once it listens.

    A restart of the same service passes the same ``prefix`` (and database) and ``user=None``."""
    prefix = prefix or f"e2e-{secrets.token_hex(4)}"
    env = dict(os.environ, OUTPOST_HOME=str(home), PYTHONUNBUFFERED="1", **(env_extra or {}))
    for var in ("OUTPOST_URL", "OUTPOST_TOKEN"):
        env.pop(var, None)
    argv = [cli("outpost-service"), "serve", "--host", "127.0.0.1", "--port", str(port), *extra]
    argv += ["--database-url", database_url, "--amqp-url", amqp_url, "--amqp-prefix", prefix]
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output: list[str] = []
    listening = threading.Event()
    address: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            match = re.search(r"listening on (https?://\S+)", line)
            if match and not listening.is_set():
                address.append(match.group(1))
                listening.set()
        listening.set()

    threading.Thread(target=pump, daemon=True).start()
    if not listening.wait(60) or not address:
        process.kill()
        raise RuntimeError("outpost-service did not start:\n" + "".join(output))
    service = RunningService(
        url=address[0],
        token="",
        home=home,
        database_url=database_url,
        amqp_prefix=prefix,
        process=process,
        output=output,
    )
    if user is not None:
        service.token = service.create_user(user)
    return service


def stop_service(service: RunningService) -> None:
    """Stop the service process and remove what it declared on the shared broker."""
    service.process.terminate()
    try:
        service.process.wait(30)
    except subprocess.TimeoutExpired:
        service.process.kill()
        service.process.wait(10)
    delete_topology(service.amqp_prefix, service.endpoint_ids)


@dataclass
class RunningEndpoint:
    name: str
    endpoint_id: str
    home: Path
    env: dict[str, str]

    def run(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run ``outpost-endpoint ARGS`` as this endpoint's user."""
        argv = [cli("outpost-endpoint"), *args]
        if check:
            return checked(argv, self.env, timeout)
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout)

    @property
    def task_queue(self) -> str:
        """The name of its task queue, as the service told it at registration."""
        info = json.loads((self.home / "endpoints" / self.name / "endpoint.json").read_text())
        return str(info["task_queue"])

    def start(self) -> str:
        run = self.run("start", self.name)
        match = re.search(r"started: ([0-9a-f-]{36})", run.stdout)
        assert match, run.stdout + run.stderr
        return match.group(1)

    def stop(self) -> None:
        self.run("stop", self.name)


def make_endpoint(
    service: RunningService,
    home: Path,
    name: str,
    *,
    template: str | None = None,
    config: str | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
    env_extra: dict[str, str] | None = None,
) -> RunningEndpoint:
    """Configure (from ``template``; its config.yaml replaced by the text ``config``, then
    changed by ``edit``) and start an endpoint with the real CLI; returns once it is
    connected."""
    env = {**service.env(home), **(env_extra or {})}
    configure = [cli("outpost-endpoint"), "configure", name]
    checked(configure + (["--template", template] if template else []), env, 60)
    path = home / "endpoints" / name / "config.yaml"
    if config is not None:
        path.write_text(config)
    if edit is not None:
        data = yaml.safe_load(path.read_text())
        edit(data)
        path.write_text(yaml.safe_dump(data))
    endpoint = RunningEndpoint(name=name, endpoint_id="", home=home, env=env)
    endpoint.endpoint_id = endpoint.start()
    service.endpoint_ids.append(endpoint.endpoint_id)
    return endpoint
