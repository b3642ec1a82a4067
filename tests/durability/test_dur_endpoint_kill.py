"""kill -9 of the endpoint daemon (and its workers) mid-campaign loses no task.

Killed: the endpoint daemon's process group (daemon + process-pool workers), with SIGKILL,
once a third of the campaign is stored.  Counted: every task has exactly one terminal result
with the right value after ``outpost-endpoint start`` brings it back (the journal replays what
it had acked but not finished, and publishes the results it had spooled).
"""

from __future__ import annotations

from ..e2e.stack import RunningEndpoint
from .campaign import TASKS, Campaign, kill_endpoint


def test_kill_9_endpoint_mid_campaign(campaign: Campaign, endpoint: RunningEndpoint) -> None:
    campaign.submit(TASKS)
    campaign.wait_for(TASKS // 3)
    kill_endpoint(endpoint)
    assert campaign.finished() < TASKS, "the campaign ended before the kill: make it longer"
    journal = endpoint.home / "endpoints" / endpoint.name / "journal.db"
    assert journal.exists()
    endpoint.start()
    campaign.wait_for(TASKS)
    counts = campaign.verdict()
    print(f"endpoint kill -9: {counts}")
