"""The conventions shared by every Outpost process: home folder, retry delays, URL redaction."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from outpost.protocol.conventions import outpost_home, redact_url
from outpost.runtime.backoff import Backoff, backoff_delay


def test_outpost_home_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OUTPOST_HOME", str(tmp_path / "state"))
    assert outpost_home() == tmp_path / "state"
    monkeypatch.delenv("OUTPOST_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert outpost_home() == tmp_path / ".outpost"


def test_relative_home_becomes_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OUTPOST_HOME", "rel")
    assert outpost_home() == tmp_path / "rel"


@pytest.mark.parametrize("attempt", [0, 1, 5, 40, 1000])
def test_backoff_delay_stays_within_its_cap(attempt: int) -> None:
    delays = [backoff_delay(attempt, base=0.5, cap=4.0) for _ in range(200)]
    assert all(0 <= d <= min(4.0, 0.5 * 2**attempt) for d in delays)


def test_backoff_wait_returns_at_once_when_stopped() -> None:
    stop = threading.Event()
    stop.set()
    backoff = Backoff(base=60, cap=60)
    assert backoff.wait(stop) is True
    backoff.reset()
    assert backoff.next_delay() <= 60


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://user:secret@rabbit:5672/vh", "amqp://user:***@rabbit:5672/vh"),
        ("postgresql+psycopg://u:p@db/outpost", "postgresql+psycopg://u:***@db/outpost"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("amqp://guest:guest@[::1]:5672/", "amqp://guest:***@[::1]:5672/"),
    ],
)
def test_redact_url_hides_only_the_password(url: str, expected: str) -> None:
    assert redact_url(url) == expected
