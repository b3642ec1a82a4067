"""A worker process that dies mid-task (``os._exit``) fails that task only, clearly.

Killed: the process-pool worker running task ``DIE_ON`` (the task calls ``os._exit(3)``).
Counted: that task has exactly one result, ``failed`` with reason ``worker_lost``; every other
task of the campaign has exactly one ``success`` result with the right value, and the endpoint
keeps working (a replacement worker takes the rest).
"""

from __future__ import annotations

from .campaign import TASKS, Campaign

DIE_ON = 7


def test_worker_exit_fails_only_its_task(campaign: Campaign) -> None:
    campaign.submit(TASKS, die_on=DIE_ON)
    campaign.wait_for(TASKS)
    counts = campaign.verdict(failures={DIE_ON: "worker_lost"})
    assert campaign.runs_per_task()[DIE_ON] == 1  # a lost worker's task is not run again
    print(f"worker os._exit: {counts}")
