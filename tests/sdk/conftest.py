"""Fixtures of the SDK tests: a fake service over real HTTP, and a client and executor for it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # for tests.json_http

from sdk_fake_service import ENDPOINT, TOKEN, FakeService

from outpost import Client, Executor


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's ~/.outpost or OUTPOST_* variables."""
    monkeypatch.setenv("OUTPOST_HOME", str(tmp_path / "outpost-home"))
    monkeypatch.delenv("OUTPOST_URL", raising=False)
    monkeypatch.delenv("OUTPOST_TOKEN", raising=False)


@pytest.fixture
def service() -> Iterator[FakeService]:
    fake = FakeService().start()
    yield fake
    fake.stop()


@pytest.fixture
def client(service: FakeService) -> Iterator[Client]:
    c = Client(service.url, TOKEN, retries=1)
    yield c
    c.close()


@pytest.fixture
def executor(client: Client) -> Iterator[Executor]:
    ex = Executor(endpoint_id=ENDPOINT, client=client)
    yield ex
    ex.shutdown(wait=False, cancel_futures=True)
