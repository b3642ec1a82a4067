"""The PBS Pro provider: blocks are ``qsub`` jobs, polled with ``qstat -x -f -F json``, ended
with ``qdel`` -- what Polaris (ALCF) runs.

``qstat -x`` includes finished jobs (job history, kept for days on PBS Pro sites), so a job the
server no longer knows at all ("Unknown Job Id") is reported from the last state we saw, or
``LOST``.  Where ``-F json`` is not understood (old PBS, Torque-like installs) the provider falls
back to the text form of ``qstat -x -f`` once and for all.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from outpost_endpoint.providers.base import BlockState, BlockStatus
from outpost_endpoint.providers.batch import BatchProvider
from outpost_endpoint.providers.scheduler_command import CommandResult

log = logging.getLogger(__name__)

#: PBS Pro job_state letters -> block states (F/X are decided by Exit_status).
PBS_STATES: dict[str, BlockState] = {
    "Q": BlockState.PENDING,  # queued
    "H": BlockState.PENDING,  # held
    "W": BlockState.PENDING,  # waiting for its start time
    "T": BlockState.PENDING,  # in transit between servers
    "M": BlockState.PENDING,  # moved to another server
    "S": BlockState.PENDING,  # suspended by the server (holds no running managers)
    "U": BlockState.PENDING,  # suspended because the workstation is busy
    "R": BlockState.RUNNING,
    "E": BlockState.RUNNING,  # exiting: managers may still be finishing
    "B": BlockState.RUNNING,  # an array job that has begun
    "F": BlockState.COMPLETED,  # finished (see Exit_status)
    "X": BlockState.COMPLETED,  # finished subjob (see Exit_status)
}
#: Negative Exit_status values: PBS's JOB_EXEC_* codes (the job did not end by itself).
PBS_EXEC_CODES = {
    -1: "job exec failed, before files, no retry",
    -2: "job exec failed, after files, no retry",
    -3: "job exec failed, do retry",
    -4: "job aborted on MOM initialization",
    -11: "job exec failed due to a bad user",
    -15: "job was requeued on MOM restart",
    -27: "job was killed for exceeding its memory limit",
    -28: "job was killed for exceeding its cput limit",
    -29: "job was killed for exceeding its walltime",
}
_UNKNOWN_JOB = re.compile(r"Unknown Job Id:?\s+(\S+)", re.IGNORECASE)
_JOB_ID = re.compile(r"\d+(\[\d*\])?(\.\S+)?")


def block_status_from_pbs(job: dict[str, Any]) -> BlockStatus | None:
    """One job's attributes (from JSON or text qstat) as a BlockStatus; None if unreadable."""
    letter = str(job.get("job_state", "")).strip()
    state = PBS_STATES.get(letter)
    if state is None:
        return None
    nodes = exec_host_nodes(str(job.get("exec_host", "")))
    raw = {k: str(v) for k, v in job.items() if not isinstance(v, dict)}
    if state is not BlockState.COMPLETED:
        message = f"job_state {letter}"
        if job.get("comment"):  # e.g. "Not Running: Insufficient amount of resource: nodect"
            message = f"{message}; comment: {job['comment']}"
        return BlockStatus(state, nodes=nodes, message=message, raw=raw)
    try:
        code: int | None = int(str(job["Exit_status"]))
    except (KeyError, ValueError):
        code = None
    if code == 0:
        return BlockStatus(BlockState.COMPLETED, 0, nodes, "finished", raw)
    if code is None:
        why = "finished without an exit status (deleted before it ran)"
    elif code < 0:
        why = f"Exit_status {code}: {PBS_EXEC_CODES.get(code, 'PBS could not run the job')}"
    elif code > 256:
        why = f"Exit_status {code}: killed by signal {code - 256}"
    else:
        why = f"Exit_status {code}"
    comment = job.get("comment")
    if comment:
        why = f"{why}; comment: {comment}"
    return BlockStatus(BlockState.FAILED, code, nodes, why, raw)


def exec_host_nodes(exec_host: str) -> tuple[str, ...]:
    """``nid0001/0*64+nid0002/0*64`` -> ``("nid0001", "nid0002")``."""
    names = [part.split("/")[0] for part in exec_host.split("+") if part.strip()]
    return tuple(dict.fromkeys(names))


def parse_qstat_json(text: str) -> dict[str, dict[str, Any]]:
    """The ``Jobs`` mapping of ``qstat -f -F json``; raises ValueError on garbage.

    PBS prints control characters inside strings unescaped (``Variable_List`` values), which
    strict JSON rejects; ``strict=False`` accepts them.
    """
    if not text.strip():
        return {}
    data = json.loads(text, strict=False)
    if not isinstance(data, dict):
        raise ValueError(f"qstat JSON is a {type(data).__name__}, not an object")
    jobs = data.get("Jobs", {})
    if not isinstance(jobs, dict) or not all(isinstance(v, dict) for v in jobs.values()):
        raise ValueError("qstat JSON 'Jobs' is not a mapping of job ids to attributes")
    return jobs


def parse_qstat_text(text: str) -> dict[str, dict[str, Any]]:
    """``qstat -f`` text (``Job Id: X`` then indented ``key = value`` lines, long values
    continued on tab-indented lines) as ``{job_id: {attribute: value}}``; dotted keys such as
    ``Resource_List.walltime`` become nested mappings like in the JSON form."""
    jobs: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    last_key: str | None = None
    for line in text.splitlines():
        if line.startswith("Job Id:"):
            current = jobs.setdefault(line.split(":", 1)[1].strip(), {})
            last_key = None
        elif current is not None and line.startswith("\t") and last_key:
            _append(current, last_key, line.strip())
        elif current is not None and " = " in line:
            key, value = line.strip().split(" = ", 1)
            _put(current, key, value)
            last_key = key
        elif line.strip() and current is None:
            raise ValueError(f"unexpected line before any 'Job Id:': {line!r}")
    return jobs


def _put(job: dict[str, Any], key: str, value: str) -> None:
    if "." in key:
        outer, inner = key.split(".", 1)
        job.setdefault(outer, {})[inner] = value
    else:
        job[key] = value


def _append(job: dict[str, Any], key: str, more: str) -> None:
    if "." in key:
        outer, inner = key.split(".", 1)
        job[outer][inner] += more
    else:
        job[key] += more


def _match(job_id: str, jobs: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """qsub may print ``123.short`` while qstat keys by ``123.full.server.name``."""
    if job_id in jobs:
        return jobs[job_id]
    number = job_id.split(".", 1)[0]
    for key, job in jobs.items():
        if key.split(".", 1)[0] == number:
            return job
    return None


class PBSProProvider(BatchProvider):
    """Blocks as PBS Pro jobs with ``select``/``place`` chunks, as on Polaris."""

    label = "pbspro"
    config_fields = (*BatchProvider.config_fields, "select_options", "place")
    scheduler_name = "PBS Pro"
    submit_command = ("qsub",)
    cancel_command = "qdel"
    list_command = "qstat -u $USER"

    def __init__(
        self, *, select_options: str | None = None, place: str = "scatter", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.select_options = (select_options or "").strip().strip(":")
        self.place = place
        self._json = True

    def select(self) -> str:
        parts = [str(self.nodes_per_block)]
        if self.cpus_per_node:
            parts.append(f"ncpus={self.cpus_per_node}")
        if self.select_options:
            parts.append(self.select_options)
        return ":".join(parts)

    def directives(self, job_name: str, logs: Path) -> list[str]:
        lines = [
            f"#PBS -N {job_name}",
            "#PBS -S /bin/bash",
            f"#PBS -o {logs / f'{job_name}.out'}",
            f"#PBS -e {logs / f'{job_name}.err'}",
            f"#PBS -l walltime={self.walltime}",
            f"#PBS -l select={self.select()}",
            f"#PBS -l place={self.place}",
        ]
        if self.account:
            lines.append(f"#PBS -A {self.account}")
        if self.queue:
            lines.append(f"#PBS -q {self.queue}")
        return lines

    def job_id_in(self, line: str) -> str | None:
        return line if _JOB_ID.fullmatch(line) else None

    def unknown_job(self, stderr: str) -> bool:
        return bool(_UNKNOWN_JOB.search(stderr))

    def find_command(self, job_name: str) -> list[str]:
        """``qselect -N NAME`` lists the unfinished jobs with that name."""
        return ["qselect", "-N", job_name]

    def _query(self, job_ids: Sequence[str]) -> dict[str, BlockStatus] | None:
        for _ in range(2):  # a second round only after switching to the text format
            use_json = self._json
            argv = ["qstat", "-x", "-f", *(["-F", "json"] if use_json else []), *job_ids]
            result = self.commands.run_with_retries(argv, accept=self._readable)
            if use_json and _json_unsupported(result.stderr):
                log.warning("pbspro: qstat does not support -F json; using its text output")
                self._json = False
                continue
            return self._interpret(job_ids, result.stdout, result.stderr, result.ok, use_json)
        return None

    def _readable(self, result: CommandResult) -> bool:
        if not self._json or _json_unsupported(result.stderr):
            return result.ok or self.unknown_job(result.stderr)
        try:
            parse_qstat_json(result.stdout)
        except ValueError:
            return False
        return result.ok or self.unknown_job(result.stderr)

    def _interpret(
        self, job_ids: Sequence[str], stdout: str, stderr: str, ok: bool, use_json: bool
    ) -> dict[str, BlockStatus] | None:
        unknown = set(_UNKNOWN_JOB.findall(stderr))
        if not ok and not unknown:
            return None
        try:
            jobs = parse_qstat_json(stdout) if use_json else parse_qstat_text(stdout)
        except ValueError as exc:
            log.warning("pbspro: unreadable qstat output (%s): %r", exc, stdout[:500])
            return None
        answer: dict[str, BlockStatus] = {}
        for job_id in job_ids:
            job = _match(job_id, jobs)
            if job is not None:
                status = block_status_from_pbs(job)
                answer[job_id] = status or BlockStatus(
                    BlockState.UNKNOWN, message=f"unknown job_state {job.get('job_state')!r}"
                )
            elif ok or job_id in unknown:
                continue  # the server says it does not know this job
            else:
                answer[job_id] = BlockStatus(BlockState.UNKNOWN, message="qstat failed")
        return answer


def _json_unsupported(stderr: str) -> bool:
    text = stderr.lower()
    return "invalid option" in text or "illegal option" in text or "unrecognized" in text
