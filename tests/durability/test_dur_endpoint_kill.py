"""kill -9 of the endpoint -- daemon, blocks, managers and workers -- mid-campaign loses no task.

Killed: every process of the endpoint (:func:`.campaign.kill_endpoint`: the daemon's process
tree and the sessions its high-throughput blocks run in, frozen with SIGSTOP then SIGKILLed
together), once a third of the campaign is stored, on both engines (process-pool and
high-throughput with the local provider).  Before the restart the test reads the journal: the
tasks it holds as received but unfinished are acked (RabbitMQ will not deliver them again), so
only the journal's replay can bring them back.  Counted after ``outpost-endpoint start``:
the restarted daemon logged the replay of exactly those task ids; every task has exactly one
terminal result with the right value, in the database and as the user sees it through the SDK
(``POST /v1/results``, every result the service answers counted); only replayed tasks ran twice.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outpost.client import result_envelope
from outpost.protocol import TaskState, deserialize

from ..e2e.stack import RunningEndpoint, RunningService, make_endpoint
from .campaign import TASKS, Campaign, kill_endpoint, wait_until


def _process_pool(config: dict[str, Any]) -> None:
    config["engine"] = {"type": "process-pool", "max_workers": 2}


@pytest.fixture(params=["process-pool", "high-throughput"])
def engine_endpoint(
    request: pytest.FixtureRequest, service: RunningService, tmp_path: Path
) -> Iterator[RunningEndpoint]:
    pool = request.param == "process-pool"
    name = f"{'pp' if pool else 'ht'}kill{uuid.uuid4().hex[:6]}"
    edit = _process_pool if pool else None
    running = make_endpoint(service, tmp_path / "endpoint", name, edit=edit)
    yield running
    running.run("stop", running.name, check=False)


def unfinished_in_journal(journal: Path) -> set[str]:
    """Task ids the journal holds as received (acked, not finished): only a replay runs them."""
    with sqlite3.connect(journal) as conn:
        rows = conn.execute("SELECT task_id FROM entries WHERE state = 'received'")
        return {row[0] for row in rows}


def replayed_in_log(log: Path, since: int) -> set[str]:
    """The task ids the daemon logged as replayed after byte offset ``since`` of its log."""
    with open(log, "rb") as handle:
        handle.seek(since)
        text = handle.read().decode(errors="replace")
    ids: set[str] = set()
    for line in text.splitlines():
        if "replayed task ids: " in line:
            ids.update(line.split("replayed task ids: ", 1)[1].split())
    return ids


def results_seen_by_the_user(campaign: Campaign) -> Counter[str]:
    """How many results the service answers per task id, through the SDK (every one counted,
    not collapsed into a dict); asserts each is a success with the right value."""
    client = campaign.client()
    seen: Counter[str] = Counter()
    try:
        for start in range(0, len(campaign.task_ids), 500):
            chunk = campaign.task_ids[start : start + 500]
            results, pending = client.poll_results(chunk, wait=0)
            assert not pending, f"{len(pending)} task(s) have no result: {pending[:5]}"
            for item in results:
                envelope = result_envelope(item)
                seen[envelope.task_id] += 1
                assert envelope.state is TaskState.SUCCESS, envelope.error
                i = campaign.expected[envelope.task_id]
                assert deserialize(envelope.value or b"") == i * i
    finally:
        client.close()
    return seen


def test_kill_9_endpoint_mid_campaign(
    service: RunningService, engine_endpoint: RunningEndpoint, tmp_path: Path
) -> None:
    endpoint = engine_endpoint
    folder = endpoint.home / "endpoints" / endpoint.name
    runs = tmp_path / "runs"
    runs.mkdir()
    campaign = Campaign(service, endpoint.endpoint_id, runs, journal=folder / "journal.db")
    campaign.submit(TASKS)
    campaign.wait_for(TASKS // 3)
    killed = kill_endpoint(endpoint)
    assert len(killed) >= 3, f"only {killed} died: the workers were not found"
    if engine_endpoint.name.startswith("ht"):  # blocks run in sessions of their own
        assert len(set(killed.values())) >= 2, f"no block session among {killed}"
    assert campaign.finished() < TASKS, "the campaign ended before the kill: make it longer"
    to_replay = unfinished_in_journal(folder / "journal.db")
    assert to_replay, "nothing was unfinished in the journal at the kill: no replay to prove"

    log_size = (folder / "endpoint.log").stat().st_size
    endpoint.start()
    wait_until(
        lambda: replayed_in_log(folder / "endpoint.log", log_size) >= to_replay,
        60,
        "the restarted daemon to log the replay",
    )
    assert replayed_in_log(folder / "endpoint.log", log_size) == to_replay
    campaign.wait_for(TASKS)
    counts = campaign.verdict()
    seen = results_seen_by_the_user(campaign)
    assert set(seen) == set(campaign.task_ids) and set(seen.values()) == {1}, (
        f"tasks with other than one result: {[t for t, n in seen.items() if n != 1][:5]}"
    )
    numbers = {i: task_id for task_id, i in campaign.expected.items()}
    twice = {numbers[i] for i, n in campaign.runs_per_task().items() if n > 1}
    assert twice <= to_replay, f"{len(twice - to_replay)} task(s) ran twice without a replay"
    print(f"endpoint kill -9 ({len(killed)} processes): {counts}, replayed {len(to_replay)}")
