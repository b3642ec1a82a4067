"""Test doubles shared by the endpoint and durability tests."""

from __future__ import annotations

import threading
from typing import Any

from outpost.protocol import ResultEnvelope


class ResultCollector:
    """Stands in for the result publisher: collects what the consumer hands it."""

    def __init__(self) -> None:
        self.results: list[ResultEnvelope] = []
        self.cond = threading.Condition()

    def publish_result(self, result: ResultEnvelope, on_confirmed: Any = None) -> None:
        with self.cond:
            self.results.append(result)
            self.cond.notify_all()

    def wait(self, count: int) -> list[ResultEnvelope]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.results) >= count, 60)
            return list(self.results)
