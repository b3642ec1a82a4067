"""The result watcher's polling order: ids a poll left pending are polled again first."""

from __future__ import annotations

import queue
from typing import Any

from outpost import OutpostFuture
from outpost.executor.watcher import Watcher

WAIT = 30


class RecordingClient:
    """Stands in for ``Client.poll_results``: records each poll and answers "nothing yet"
    once the test releases it, so the test controls what happens while a poll is out."""

    trust_endpoints: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self.polls: queue.Queue[list[str]] = queue.Queue()
        self.release: queue.Queue[None] = queue.Queue()

    def poll_results(
        self, ids: list[str], wait: float, trust: Any = ()
    ) -> tuple[list[Any], list[str]]:
        self.polls.put(list(ids))
        self.release.get(timeout=WAIT)
        return [], list(ids)


def watched(watcher: Watcher, task_id: str) -> OutpostFuture:
    future = OutpostFuture()
    future.task_id = task_id
    watcher.watch(future)
    return future


def test_pending_ids_are_polled_again_before_newer_ones() -> None:
    client = RecordingClient()
    watcher = Watcher(client, wait=0.001, chunk=2, max_pollers=1)  # type: ignore[arg-type]
    futures = [watched(watcher, "a"), watched(watcher, "b")]
    first = client.polls.get(timeout=WAIT)
    futures.append(watched(watcher, "c"))  # newer than the ones being polled
    client.release.put(None)
    assert first == ["a", "b"] or first == ["a"]
    # Whatever the first poll covered comes back first: tasks finish roughly in order.
    second = client.polls.get(timeout=WAIT)
    assert second[: len(first)] == first
    assert "c" not in second[: len(first)]
    for future in futures:
        future.cancel()
    watcher.stop()
    for _ in range(3):
        client.release.put(None)
