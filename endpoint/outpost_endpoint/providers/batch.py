"""What the PBS Pro and Slurm providers share: limits, job scripts, and honest state keeping.

A batch provider promises three things the engine relies on:

* it never has more than ``max_blocks`` live jobs nor more than ``max_queued_blocks`` waiting
  ones (sites cap queued jobs per user: Polaris allows 100), counting jobs whose state is
  unknown as live -- a failed poll must not free a slot;
* a failed, timed-out or garbled poll gives ``UNKNOWN`` for that round; a state is never guessed;
* a job that left the scheduler's memory keeps the last final state we saw for it; if we never
  saw it end it is ``LOST`` (``CANCELLED`` if we cancelled it ourselves);
* a submission whose answer was lost (``qsub`` timed out, printed garbage) is not simply
  retried -- the job may exist, and a second one would break ``max_blocks``.  Job names carry
  a random tag per provider, so the provider looks the job up by name and adopts it if found.
"""

from __future__ import annotations

import abc
import logging
import re
import secrets
import shlex
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from string import Template

from outpost_endpoint.errors import ProviderError, SubmissionUncertain
from outpost_endpoint.providers.base import BlockState, BlockStatus, Provider
from outpost_endpoint.providers.scheduler_command import SchedulerCommands

log = logging.getLogger(__name__)

_WALLTIME = re.compile(r"(\d+):([0-5]\d):([0-5]\d)")
_JOB_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]")


def walltime_seconds(walltime: str) -> int:
    """``"HH:MM:SS"`` (hours may exceed 24) as seconds."""
    match = _WALLTIME.fullmatch(walltime.strip())
    if not match:
        raise ProviderError(f'walltime {walltime!r} is not HH:MM:SS, e.g. "01:00:00"')
    hours, minutes, seconds = (int(g) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def normalise_walltime(walltime: str) -> str:
    """``"0:10:00"`` -> ``"00:10:00"`` (what qstat and squeue print back)."""
    total = walltime_seconds(walltime)
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def render_template(name: str, values: dict[str, str]) -> str:
    """Fill ``providers/templates/<name>`` (``$names``, ``string.Template`` syntax)."""
    text = resources.files("outpost_endpoint.providers").joinpath(f"templates/{name}").read_text()
    return Template(text).substitute(values)


class BatchProvider(Provider, abc.ABC):
    """Submit/poll/cancel bookkeeping, and the scheduler commands every batch system has in
    the same form; a subclass names its commands and says what is its own: the script's
    directives, how job ids look, how the scheduler says "no such job", and the poll."""

    config_fields: tuple[str, ...] = (
        "account",
        "queue",
        "walltime",
        "scheduler_options",
        "cpus_per_node",
        "max_queued_blocks",
    )
    #: the scheduler's name for people, in the job script's first line, e.g. "Slurm"
    scheduler_name: str
    #: what submits a script (its path is added), e.g. ``("sbatch", "--parsable")``
    submit_command: tuple[str, ...]
    #: what ends jobs (their ids are added), e.g. ``"scancel"``
    cancel_command: str
    #: what a user runs to see their jobs, suggested when a submission's answer was lost
    list_command: str

    def __init__(
        self,
        *,
        run_dir: str | Path,
        account: str | None = None,
        queue: str | None = None,
        walltime: str = "00:10:00",
        scheduler_options: str = "",
        worker_init: str = "",
        nodes_per_block: int = 1,
        min_blocks: int = 0,
        max_blocks: int = 1,
        cpus_per_node: int | None = None,
        max_queued_blocks: int | None = None,
        commands: SchedulerCommands | None = None,
        job_name_prefix: str = "outpost",
    ) -> None:
        super().__init__(
            nodes_per_block=nodes_per_block,
            min_blocks=min_blocks,
            max_blocks=max_blocks,
            walltime_seconds=float(walltime_seconds(walltime)),
            max_queued_blocks=max_queued_blocks,
        )
        self.run_dir = Path(run_dir).absolute()
        self.account = account
        self.queue = queue
        self.walltime = normalise_walltime(walltime)
        self.scheduler_options = scheduler_options or ""
        self.worker_init = worker_init or ""
        self.cpus_per_node = cpus_per_node
        self.commands = commands or SchedulerCommands()
        self.job_name_prefix = job_name_prefix
        self._lock = threading.Lock()
        self._submit_lock = threading.Lock()
        self._last: dict[str, BlockStatus] = {}  # last *known* status of every job we submitted
        self._cancelled: set[str] = set()
        self._scripts_dir = self.run_dir / "submit_scripts"
        #: makes job names unique to this provider (this endpoint run), for adoption by name
        self.tag = secrets.token_hex(3)

    # -- what subclasses provide -------------------------------------------------------------

    @abc.abstractmethod
    def directives(self, job_name: str, logs: Path) -> list[str]:
        """The scheduler's lines at the top of the job script: name, log files in ``logs``,
        size, time limit and the optional settings that are set."""

    @abc.abstractmethod
    def job_id_in(self, line: str) -> str | None:
        """The job id a line of the submit or find command prints, None if it holds none."""

    @abc.abstractmethod
    def unknown_job(self, stderr: str) -> bool:
        """Whether the scheduler's error output says it does not know a job id."""

    @abc.abstractmethod
    def find_command(self, job_name: str) -> list[str]:
        """The command that lists the ids of unfinished jobs named ``job_name``, one a line."""

    @abc.abstractmethod
    def _query(self, job_ids: Sequence[str]) -> dict[str, BlockStatus] | None:
        """Ask the scheduler.  ``None``: it could not be asked (everything UNKNOWN).  A job id
        absent from the answer is one the scheduler definitely does not know any more."""

    # -- the scheduler commands, in the same form everywhere ---------------------------------

    def job_script(self, command: str, job_name: str) -> str:
        """The batch script text for one block."""
        logs = self.run_dir / "block_logs"
        logs.mkdir(parents=True, exist_ok=True)
        return render_template(
            "block.sh",
            {
                "job_name": job_name,
                "scheduler": self.scheduler_name,
                "directives": "\n".join(self.directives(job_name, logs)),
                "scheduler_options": self.scheduler_options.strip(),
                "run_dir": shlex.quote(str(self.run_dir)),
                "worker_init": self.worker_init.strip(),
                "command": command,
            },
        )

    def _submit(self, script_path: Path) -> str:
        """Submit the script; return the job id, or raise ProviderError (refused) or
        SubmissionUncertain (the answer was lost: the job may exist)."""
        tool = self.submit_command[0]
        result = self.commands.run([*self.submit_command, str(script_path)])
        if result.timed_out:
            raise SubmissionUncertain(f"{tool} of {script_path}: {result.describe()}")
        if not result.ok:
            raise ProviderError(
                f"{tool} refused block script {script_path}: {result.describe()}",
                detail=result.said(),
            )
        lines = result.stdout.strip().splitlines()
        job_id = self.job_id_in(lines[-1].strip()) if lines else None
        if not job_id:
            raise SubmissionUncertain(
                f"{tool} printed no job id for {script_path}: {result.describe()}; "
                f"check `{self.list_command}` for a job that may have been created"
            )
        return job_id

    def _find_by_name(self, job_name: str) -> list[str] | None:
        """Ids of unfinished jobs named ``job_name``; None if the scheduler could not say."""
        result = self.commands.run_with_retries(self.find_command(job_name))
        if not result.ok:
            return None
        found = (self.job_id_in(line.strip()) for line in result.stdout.splitlines())
        return [job_id for job_id in found if job_id]

    def _cancel(self, job_ids: Sequence[str]) -> None:
        """Ask the scheduler to end these jobs (raise ProviderError if it refused); a job it
        no longer knows is ended already."""
        result = self.commands.run_with_retries(
            [self.cancel_command, *job_ids],
            accept=lambda r: r.ok or self.unknown_job(r.stderr),
        )
        if not result.ok and not self.unknown_job(result.stderr):
            raise ProviderError(f"{self.cancel_command} failed: {result.describe()}")

    # -- the Provider interface --------------------------------------------------------------

    def job_name(self, block_id: str) -> str:
        """``outpost_<block id>_<tag>``: letters, digits, ``_`` and ``-`` only, starting with a
        letter (what PBS and Slurm both accept), at most 64 characters."""
        name = _JOB_NAME_BAD.sub("_", f"{self.job_name_prefix}_{block_id}")[:57]
        name = f"{name}_{self.tag}"
        return name if name[:1].isalpha() else f"j{name}"[:64]

    def job_name_for(self, block_id: str) -> str | None:
        return self.job_name(block_id)

    def find_jobs(self, job_name: str) -> list[str]:
        return self._find_by_name(job_name) or []

    def live_jobs(self) -> list[str]:
        """Jobs not known to have ended (pending, running or unknown)."""
        with self._lock:
            return [j for j, s in self._last.items() if not s.state.is_terminal]

    def queued_jobs(self) -> list[str]:
        with self._lock:
            return [j for j, s in self._last.items() if s.state is BlockState.PENDING]

    def submit(self, command: str, block_id: str) -> str:
        with self._submit_lock:  # the limits are checked and used by one submission at a time
            return self._submit_block(command, block_id)

    def _submit_block(self, command: str, block_id: str) -> str:
        live = self.live_jobs()
        if len(live) >= self.max_blocks:
            raise ProviderError(
                f"{self.label}: not submitting block {block_id}: {len(live)} block(s) "
                f"({', '.join(live)}) are already live and max_blocks is {self.max_blocks}"
            )
        queued = self.queued_jobs()
        if self.max_queued_blocks is not None and len(queued) >= self.max_queued_blocks:
            raise ProviderError(
                f"{self.label}: not submitting block {block_id}: {len(queued)} block(s) are "
                f"queued and max_queued_blocks (the site's queued-job limit) is "
                f"{self.max_queued_blocks}"
            )
        name = self.job_name(block_id)
        self._scripts_dir.mkdir(parents=True, exist_ok=True)
        script = self._scripts_dir / f"{name}.sh"
        script.write_text(self.job_script(command, name))
        script.chmod(0o700)  # private, like everything in the run folder
        try:
            job_id = self._submit(script)
        except SubmissionUncertain as exc:
            job_id = self._adopt(name, exc)
        log.info("%s: submitted block %s as job %s (%s)", self.label, block_id, job_id, script)
        with self._lock:
            self._last[job_id] = BlockStatus(BlockState.PENDING, message="submitted")
        return job_id

    def _adopt(self, name: str, exc: SubmissionUncertain) -> str:
        """After an uncertain submission: the job that was created after all, or re-raise."""
        found = self._find_by_name(name)
        if found is None:
            raise SubmissionUncertain(
                f"{exc}; and the scheduler could not be asked whether job {name} exists: "
                "check the queue for it"
            ) from exc
        if not found:
            raise exc
        if len(found) > 1:
            log.warning("%s: several jobs named %s: %s", self.label, name, ", ".join(found))
        log.warning("%s: the submission of %s seemed to fail (%s) but created job %s; "
                    "using it", self.label, name, exc, found[0])  # fmt: skip
        return found[0]

    def status(self, job_ids: Sequence[str]) -> dict[str, BlockStatus]:
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return {}
        with self._lock:
            final = {j: self._last[j] for j in ids if j in self._last and _final(self._last[j])}
        ask = [j for j in ids if j not in final]
        answer = self._query(ask) if ask else {}
        result: dict[str, BlockStatus] = dict(final)
        with self._lock:
            for job_id in ask:
                if answer is None:
                    result[job_id] = BlockStatus(
                        BlockState.UNKNOWN, message=f"{self.label} could not be queried"
                    )
                    continue
                status = answer.get(job_id)
                if status is None:
                    status = self._vanished(job_id)
                elif job_id in self._cancelled and status.state is BlockState.FAILED:
                    status = BlockStatus(
                        BlockState.CANCELLED,
                        status.exit_code,
                        status.nodes,
                        "cancelled",
                        status.raw,
                    )
                if status.state is not BlockState.UNKNOWN:
                    self._last[job_id] = status
                result[job_id] = status
        return result

    def _vanished(self, job_id: str) -> BlockStatus:
        if job_id in self._cancelled:
            return BlockStatus(
                BlockState.CANCELLED, message="cancelled; no longer in the scheduler"
            )
        return BlockStatus(
            BlockState.LOST,
            message=f"{self.label} no longer knows job {job_id} and it was never seen ending",
        )

    def close(self) -> None:
        """Interrupt any backoff wait between scheduler retries (endpoint shutdown)."""
        self.commands.stop.set()

    def cancel_leftovers(self, job_ids: Sequence[str]) -> None:
        """``qdel``/``scancel`` the previous run's jobs, one at a time (a job that has finished
        must not keep the others alive), without adding them to this run's books."""
        failures: list[str] = []
        for job_id in dict.fromkeys(job_ids):
            try:
                self._cancel([job_id])
                log.info("%s: cancelled job %s of the previous run", self.label, job_id)
            except ProviderError as exc:
                failures.append(str(exc))
        if failures:
            raise ProviderError("; ".join(failures))

    def cancel(self, job_ids: Sequence[str]) -> None:
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return
        with self._lock:
            self._cancelled.update(ids)
        self._cancel(ids)


def _final(status: BlockStatus) -> bool:
    return status.state.is_terminal and status.state is not BlockState.LOST
