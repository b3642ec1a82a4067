"""The Slurm provider: blocks are ``sbatch`` jobs, polled with ``squeue`` (then ``sacct``, then
``scontrol``), ended with ``scancel``.

Where a job's final state comes from: ``squeue -t all`` lists every job slurmctld still holds
(finished ones for ``MinJobAge``, 300 s by default); their exit codes come from ``scontrol -o show
job``.  A job that left slurmctld is looked up in ``sacct`` -- which only works with slurmdbd, so
"accounting storage is disabled" is remembered and not asked again.  A job neither knows is
*finished, state unknown*: the provider reports the last final state it saw for it, and ``LOST``
if it never saw one (``CANCELLED`` if we cancelled it).  It never reports such a job as running.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from outpost_endpoint.launchers.nodelist import NodeListError, expand_hostlist
from outpost_endpoint.providers.base import BlockState, BlockStatus
from outpost_endpoint.providers.batch import BatchProvider

log = logging.getLogger(__name__)

#: Slurm job states (squeue %T / scontrol JobState / sacct State) -> block states.
SLURM_STATES: dict[str, BlockState] = {
    "PENDING": BlockState.PENDING,
    "CONFIGURING": BlockState.PENDING,
    "REQUEUED": BlockState.PENDING,
    "REQUEUE_HOLD": BlockState.PENDING,
    "REQUEUE_FED": BlockState.PENDING,
    "RESV_DEL_HOLD": BlockState.PENDING,
    "SUSPENDED": BlockState.PENDING,
    "STOPPED": BlockState.PENDING,
    "RUNNING": BlockState.RUNNING,
    "COMPLETING": BlockState.RUNNING,
    "STAGE_OUT": BlockState.RUNNING,
    "SIGNALING": BlockState.RUNNING,
    "RESIZING": BlockState.RUNNING,
    "COMPLETED": BlockState.COMPLETED,
    "CANCELLED": BlockState.CANCELLED,
    "REVOKED": BlockState.CANCELLED,
    "FAILED": BlockState.FAILED,
    "TIMEOUT": BlockState.FAILED,
    "NODE_FAIL": BlockState.FAILED,
    "BOOT_FAIL": BlockState.FAILED,
    "OUT_OF_MEMORY": BlockState.FAILED,
    "PREEMPTED": BlockState.FAILED,
    "DEADLINE": BlockState.FAILED,
    "SPECIAL_EXIT": BlockState.FAILED,
}
_INVALID_ID = "invalid job id"
_JOB_ID = re.compile(r"(\d+)(?:;\S+)?")


def slurm_state(text: str) -> BlockState | None:
    """``"CANCELLED by 0"`` / ``"CANCELLED+"`` -> CANCELLED; None for a word Slurm never prints."""
    word = text.strip().split(" ")[0].rstrip("+").upper()
    return SLURM_STATES.get(word)


def parse_exit_code(text: str) -> int | None:
    """Slurm's ``ExitCode=3:0`` (status:signal) -> 3, or 128+signal when killed by a signal."""
    code, _, signal = text.strip().partition(":")
    if not code.isdigit():
        return None
    if signal.isdigit() and int(signal) and not int(code):
        return 128 + int(signal)
    return int(code)


def parse_scontrol_record(line: str) -> dict[str, str]:
    """One ``scontrol -o show job`` line as a dict (values may contain spaces only at the end)."""
    fields: dict[str, str] = {}
    for match in re.finditer(r"(\S+?)=(.*?)(?= \S+?=|$)", line.strip()):
        fields[match.group(1)] = match.group(2)
    return fields


class SlurmProvider(BatchProvider):
    """Blocks as Slurm jobs; ``queue`` is the partition (``partition`` wins if both are set)."""

    label = "slurm"
    config_fields = (
        *BatchProvider.config_fields,
        "partition",
        "qos",
        "constraint",
        "gpus_per_node",
        "exclusive",
    )
    scheduler_name = "Slurm"
    submit_command = ("sbatch", "--parsable")
    cancel_command = "scancel"
    list_command = "squeue -u $USER"

    def __init__(
        self,
        *,
        partition: str | None = None,
        qos: str | None = None,
        constraint: str | None = None,
        gpus_per_node: int | None = None,
        tasks_per_node: int = 1,
        exclusive: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.partition = partition or self.queue
        self.qos = qos
        self.constraint = constraint
        self.gpus_per_node = gpus_per_node
        self.tasks_per_node = tasks_per_node
        #: whole nodes (``--exclusive``), as Parsl does: the manager's MPI tasks need every CPU
        self.exclusive = exclusive
        self._sacct_works = True

    def directives(self, job_name: str, logs: Path) -> list[str]:
        lines = [
            f"#SBATCH --job-name={job_name}",
            f"#SBATCH --output={logs / f'{job_name}.%j.out'}",
            f"#SBATCH --error={logs / f'{job_name}.%j.err'}",
            f"#SBATCH --nodes={self.nodes_per_block}",
            f"#SBATCH --ntasks-per-node={self.tasks_per_node}",
            f"#SBATCH --time={self.walltime}",
        ]
        for flag, value in (
            ("partition", self.partition),
            ("account", self.account),
            ("qos", self.qos),
            ("constraint", self.constraint),
            ("gpus-per-node", self.gpus_per_node),
            ("cpus-per-task", self.cpus_per_node),
        ):
            if value:
                lines.append(f"#SBATCH --{flag}={value}")
        if self.exclusive:
            lines.append("#SBATCH --exclusive")
        return lines

    def job_id_in(self, line: str) -> str | None:
        match = _JOB_ID.fullmatch(line)  # ``sbatch --parsable`` adds ``;cluster`` on some sites
        return match.group(1) if match else None

    def unknown_job(self, stderr: str) -> bool:
        return _INVALID_ID in stderr.lower()

    def find_command(self, job_name: str) -> list[str]:
        return ["squeue", "-h", "-n", job_name, "-t", "PENDING,RUNNING,CONFIGURING", "-o", "%i"]

    def _query(self, job_ids: Sequence[str]) -> dict[str, BlockStatus] | None:
        result = self.commands.run_with_retries(
            ["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%T|%N|%r"],
            accept=lambda r: r.ok or self.unknown_job(r.stderr),
        )
        if not result.ok and not self.unknown_job(result.stderr):
            return None
        answer: dict[str, BlockStatus] = {}
        for line in result.stdout.splitlines() if result.ok else []:
            parts = line.strip().split("|", 3)
            if len(parts) != 4 or parts[0] not in job_ids:
                if line.strip():
                    log.warning("slurm: unexpected squeue line %r; asking again later", line)
                    return None
                continue
            state = slurm_state(parts[1])
            if state is None:
                log.warning("slurm: unknown job state %r for job %s", parts[1], parts[0])
                answer[parts[0]] = BlockStatus(BlockState.UNKNOWN, message=parts[1])
                continue
            reason = parts[3].strip()
            message = parts[1] if reason in ("", "None") else f"{parts[1]} ({reason})"
            answer[parts[0]] = BlockStatus(
                state, nodes=_nodes(parts[2]), message=message, raw={"JobState": parts[1]}
            )
        for job_id, status in list(answer.items()):
            if status.state.is_terminal:
                answer[job_id] = self._with_exit_code(job_id, status)
        missing = [j for j in job_ids if j not in answer]
        if missing:
            found = self._sacct(missing)
            if found is None:
                return {**answer, **{j: BlockStatus(BlockState.UNKNOWN) for j in missing}}
            answer.update(found)
        return answer

    def _with_exit_code(self, job_id: str, status: BlockStatus) -> BlockStatus:
        result = self.commands.run(["scontrol", "-o", "show", "job", job_id])
        if not result.ok:
            return status
        record = parse_scontrol_record(result.stdout.splitlines()[0] if result.stdout else "")
        code = parse_exit_code(record.get("ExitCode", ""))
        return BlockStatus(
            status.state, code, status.nodes, status.message, {**status.raw, **record}
        )

    def _sacct(self, job_ids: Sequence[str]) -> dict[str, BlockStatus] | None:
        """Final states of jobs slurmctld forgot; {} when sacct cannot know (no slurmdbd)."""
        if not self._sacct_works:
            return {}
        argv = ["sacct", "-n", "-P", "-X", "-j", ",".join(job_ids), "-o", "JobID,State,ExitCode"]
        result = self.commands.run(argv)
        if not result.ok:
            if "storage is disabled" in (result.stderr + result.stdout).lower():
                log.info(
                    "slurm: sacct is unavailable (no slurmdbd); finished jobs that left "
                    "squeue are reported from what this endpoint saw last"
                )
                self._sacct_works = False
                return {}
            return None
        answer: dict[str, BlockStatus] = {}
        for line in result.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 3 and parts[0] in job_ids and (state := slurm_state(parts[1])):
                answer[parts[0]] = BlockStatus(state, parse_exit_code(parts[2]), message=parts[1])
        return answer


def _nodes(text: str) -> tuple[str, ...]:
    text = text.strip()
    if not text or text.startswith("("):
        return ()
    try:
        return tuple(expand_hostlist(text))
    except NodeListError:
        return ()
