"""``HighThroughputEngine``: an interchange here, blocks from a provider, a manager per node.

``start`` makes fresh CurveZMQ keys, writes the managers' settings into the run directory,
starts the interchange thread and a scaling thread.  The scaling thread asks the provider about
its blocks, tells the interchange when a block's job ended (its tasks are retried or failed at
once), and applies :mod:`.strategy` to submit or release blocks.  Everything a task can run into
(worker death, lost manager, ended block, walltime, cancel) resolves its future with a result;
see :mod:`outpost_endpoint.engine.base`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import shlex
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from outpost.protocol import DEFAULT_PAYLOAD_LIMIT, ResultEnvelope, TaskEnvelope
from outpost.runtime.files import write_json_private
from outpost_endpoint.config import EngineConfig
from outpost_endpoint.engine.base import Engine
from outpost_endpoint.engine.high_throughput import packing, security, strategy
from outpost_endpoint.engine.high_throughput.block_records import BlockRecords, end_leftovers
from outpost_endpoint.engine.high_throughput.blocks import BlockBook
from outpost_endpoint.engine.high_throughput.interchange import Interchange, Scheduling, TaskRecord
from outpost_endpoint.engine.high_throughput.layout import worker_count
from outpost_endpoint.engine.high_throughput.manager_settings import ManagerSettings
from outpost_endpoint.engine.high_throughput.status_view import STATUS_FILE
from outpost_endpoint.engine.high_throughput.submit_backoff import SubmitBackoff
from outpost_endpoint.errors import ConfigError, EngineError, ProviderError, SubmissionUncertain
from outpost_endpoint.launchers.base import Launcher
from outpost_endpoint.launchers.registry import launcher_from_config
from outpost_endpoint.launchers.simple import SingleNodeLauncher
from outpost_endpoint.providers.base import BlockState, Provider
from outpost_endpoint.providers.registry import provider_from_config
from outpost_endpoint.results import failed_result

log = logging.getLogger(__name__)
#: blocks in a row that end before their manager connects before waiting tasks are failed
#: (two fit in one submission window even with max_blocks: 1, so the answer comes quickly)
MAX_FAILED_STARTS = 2


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f" Its log ({path}) ends with:\n" + "\n".join(tail) + "\n" if tail else ""


class HighThroughputEngine(Engine):
    def __init__(
        self,
        config: EngineConfig,
        run_dir: Path | None = None,
        *,
        provider: Provider | None = None,
        launcher: Launcher | None = None,
        payload_limit: int | None = DEFAULT_PAYLOAD_LIMIT,
        strategy_period: float = 1.0,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="outpost-hte-")).absolute()
        self.provider = provider or provider_from_config(config.provider, self.run_dir)
        self.launcher = launcher or launcher_from_config(config.provider.launcher)
        self.payload_limit = payload_limit
        self.strategy_period = strategy_period
        self.book = BlockBook()
        self.records = BlockRecords(self.run_dir, self.provider.label)
        self.submit_backoff = SubmitBackoff()
        #: scaling steps done so far (diagnostics, and for tests to wait on)
        self.scale_rounds = 0
        self._failed_starts = 0
        self._released: set[str] = set()
        self.interchange: Interchange | None = None
        self._stop = threading.Event()
        self._poke = threading.Event()
        self._closing = False
        self._scaler = threading.Thread(target=self._scale_loop, name="outpost-scaler", daemon=True)
        cores = config.provider.cpus_per_node or 1
        self.workers_per_node = worker_count(
            config.max_workers_per_node, config.available_accelerators, cores
        )

    @property
    def drain_period(self) -> float:
        """Seconds before a block's end in which its managers start no new task:
        ``engine.drain_period``, else 2 x heartbeat_threshold capped at a quarter of the
        blocks' walltime (so short blocks still do work)."""
        if self.config.drain_period is not None:
            return self.config.drain_period
        return min(2 * self.config.heartbeat_threshold, self.provider.walltime_seconds / 4)

    # ----------------------------------------------------------------- Engine API
    def start(self) -> None:
        if self.interchange is not None:
            return
        if self.drain_period >= self.provider.walltime_seconds:
            raise ConfigError(
                f"engine.drain_period of {self.drain_period:g} s is not shorter than the blocks' "
                f"walltime of {self.provider.walltime_seconds:g} s, so no block would ever take "
                "a task; lower engine.drain_period or raise engine.provider.walltime"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        end_leftovers(self.run_dir, self.provider)  # a killed previous run's blocks
        keys = security.generate()
        security.write_client_files(keys, self.run_dir / "curve")
        local = self.provider.label == "local"
        self.interchange = Interchange(
            keys,
            Scheduling(
                prefetch_capacity=self.config.prefetch_capacity,
                heartbeat_period=self.config.heartbeat_period,
                heartbeat_threshold=self.config.heartbeat_threshold,
                drain_period=self.drain_period,
            ),
            bind_host="127.0.0.1" if local and not self.config.interchange_address else "*",
        )
        self.interchange.on_manager_registered = lambda m: self.book.manager_registered(m.block_id)
        connect_host = self.config.interchange_address or ("127.0.0.1" if local else _hostname())
        self.address = f"tcp://{connect_host}:{self.interchange.port}"
        ManagerSettings.of_engine(
            self.config, self.provider.walltime_seconds, self.payload_limit
        ).write(self.run_dir)
        self.interchange.start()
        self._scaler.start()
        log.info(
            "high-throughput engine: interchange on %s, run dir %s", self.address, self.run_dir
        )

    def submit(self, task: TaskEnvelope) -> Future[ResultEnvelope]:
        if self.interchange is None:
            raise EngineError("the engine is not started; call start() first")
        if self._closing:
            raise EngineError("the engine is shutting down; it accepts no new tasks")
        future: Future[ResultEnvelope] = Future()
        try:
            walltime, nodes = self._check(task.resource_specification)
        except ValueError as exc:
            future.set_result(failed_result(task, "rejected", str(exc)))
            return future
        record = TaskRecord(
            task, future, time.time(), walltime, nodes, retries_left=self.config.max_retries
        )
        try:
            self.interchange.add(record)
        except KeyError:
            raise EngineError(f"task {task.task_id} is already in the engine") from None
        if not self.book.any_serving():
            # no block to run it: scale now rather than at the next period (a burst of
            # submits to running blocks must not spin the scaler, one round per task)
            self._poke.set()
        return future

    def cancel(self, task_id: str) -> bool:
        return self.interchange is not None and self.interchange.cancel(task_id)

    def status(self) -> dict[str, Any]:
        snap = self.interchange.snapshot() if self.interchange else {"managers": [], "queued": {}}
        managers = snap["managers"]
        return {
            "type": "high-throughput",
            "workers": sum(m["workers"] for m in managers),
            "idle": sum(m["idle"] for m in managers),
            "running": sum(m["busy"] for m in managers),
            "queued": sum(snap["queued"].values()),
            "queued_by_shape": snap["queued"],
            "outstanding": snap.get("outstanding", 0),
            "managers": managers,
            "blocks": self.book.describe(),
            # the last refused submission, while submissions keep failing (submit_backoff)
            "provider_error": self.submit_backoff.view(),
        }

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        interchange = self.interchange
        if interchange is None or self._stop.is_set():
            return
        self._closing = True
        for record in interchange.drain():
            record.future.cancel()
        if wait:
            with interchange.lock:
                running = [r.future for r in interchange.tasks.values()]
            concurrent.futures.wait(running, timeout=timeout)
        for record in interchange.abandon_all():
            record.future.cancel()
        self._stop.set()
        self._poke.set()
        if self._scaler.is_alive():
            self._scaler.join(30)
        interchange.stop()
        live = [b.job_id for b in self.book.live()]
        if live:
            try:
                self.provider.cancel(live)
            except ProviderError as exc:  # they stay recorded: the next start ends them
                log.error("could not cancel blocks %s: %s", live, exc)
            else:
                for job_id in live:
                    self.records.ended(job_id)
        self.provider.close()

    # ----------------------------------------------------------------- checks
    def _check(self, spec: dict[str, Any]) -> tuple[float | None, int]:
        walltime = spec.get("walltime")
        if walltime is not None:
            if (
                isinstance(walltime, bool)
                or not isinstance(walltime, (int, float))
                or walltime <= 0
            ):
                raise ValueError(
                    "resource_specification['walltime'] must be a positive number of seconds, "
                    f"got {walltime!r}"
                )
            walltime = float(walltime)
            if walltime > self.provider.walltime_seconds:
                raise ValueError(
                    f"resource_specification['walltime'] of {walltime:g} s is longer than the "
                    f"blocks' walltime of {self.provider.walltime_seconds:g} s, so no block could "
                    "run it; shorten the task's walltime or raise engine.provider.walltime"
                )
        nodes = 0
        if packing.is_mpi(spec):
            nodes = packing.nodes_needed(spec)
            if not packing.fits_anywhere(nodes, self.provider.nodes_per_block):
                raise ValueError(
                    f"the task asks for num_nodes={nodes} but blocks have "
                    f"{self.provider.nodes_per_block} node(s); lower num_nodes or raise "
                    "engine.provider.nodes_per_block"
                )
        return walltime, nodes

    # ----------------------------------------------------------------- scaling
    def manager_command(self, block_id: str) -> str:
        argv = [
            sys.executable, "-m", "outpost_endpoint.engine.high_throughput.manager",
            "--address", self.address, "--block-id", block_id, "--run-dir", str(self.run_dir),
        ]  # fmt: skip
        return shlex.join(argv)

    def _block_command(self, block_id: str) -> str:
        nodes = self.provider.nodes_per_block
        command = self.manager_command(block_id)
        if self.provider.label == "local":
            # A local block stands for nodes_per_block nodes: one manager per "node".
            return SingleNodeLauncher()(command, 1, tasks_per_node=nodes)
        return self.launcher(command, nodes, 1)

    def _scale_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._scale_once()
                self._write_status()
                self.scale_rounds += 1
            except Exception:  # the loop must survive a bad scheduler answer
                log.exception("scaling step failed")
            self._poke.wait(self.strategy_period)
            self._poke.clear()

    def _scale_once(self) -> None:
        assert self.interchange is not None
        live = self.book.live()
        if live:
            statuses = self.provider.status([b.job_id for b in live])
            for block in live:
                status = statuses.get(block.job_id)
                if status is not None and self.book.update(block, status):
                    self.records.ended(block.job_id)
                    log.warning("block %s (job %s) ended: %s %s", block.block_id, block.job_id,
                                status.state.value, status.message)  # fmt: skip
                    self.interchange.lose_block(
                        block.block_id, f"its block {block.block_id} ended: {status.state.value}"
                    )
                    self._check_start(block.block_id, status.state.value, status.message)
                    if status.state == BlockState.LOST:
                        # the scheduler forgot it; if it still runs somewhere, end it so no
                        # orphan job holds nodes (a cancel of an unknown job is harmless)
                        self._cancel_quietly(block.job_id)
        if self._stop.is_set() or self._closing:
            return
        snap = self.interchange.snapshot()
        queued = sum(snap["queued"].values())
        loads = self._block_loads(snap)
        draining = self._draining_blocks()
        for block_id in sorted(draining):
            if block_id in loads and loads[block_id].busy_tasks == 0:
                # it will never take a task again: free its nodes (and its max_blocks slot)
                self._release(block_id, "drained before its walltime")
                loads.pop(block_id)
                draining.discard(block_id)
        decision = strategy.ScaleInput(
            outstanding=snap["outstanding"],
            running_blocks=self.book.count(BlockState.RUNNING),
            pending_blocks=self.book.count(BlockState.PENDING),
            min_blocks=self.provider.min_blocks,
            max_blocks=self.provider.max_blocks,
            nodes_per_block=self.provider.nodes_per_block,
            workers_per_node=self.workers_per_node,
            parallelism=self.config.parallelism,
            recent_submissions=self.book.recent_submissions(),
            max_queued_blocks=self.provider.max_queued_blocks,
            draining_blocks=len(draining),
        )
        wanted = strategy.blocks_to_add(decision)
        for _ in range(wanted if self.submit_backoff.ready() else 0):
            block_id = self.book.new_id()
            self.records.submitting(block_id, self.provider.job_name_for(block_id))
            try:
                job_id = self.provider.submit(self._block_command(block_id), block_id)
            except ProviderError as exc:
                if not isinstance(exc, SubmissionUncertain):  # else: the next start looks
                    self.records.abandoned(block_id)  # the job up by its name and ends it
                delay = self.submit_backoff.failed(exc.detail)
                log.error("could not submit block %s: %s; next try in %.0f s", block_id, exc, delay)
                break
            self.submit_backoff.succeeded()
            self.book.added(block_id, job_id)
            self.records.added(block_id, job_id)
            log.info("submitted block %s (job %s)", block_id, job_id)
        release = strategy.blocks_to_release(
            loads,
            outstanding_queued=queued,
            min_blocks=self.provider.min_blocks,
            max_idletime=self.config.max_idletime,
        )
        for block_id in release:
            self._release(block_id, "released as idle")

    def _release(self, block_id: str, why: str) -> None:
        assert self.interchange is not None
        block = self.book.blocks[block_id]
        block.cancel_requested = True
        self._released.add(block_id)
        log.info("releasing block %s (job %s): %s", block_id, block.job_id, why)
        self.interchange.lose_block(block_id, why)
        self.provider.cancel([block.job_id])

    def _draining_blocks(self) -> set[str]:
        """Running blocks whose every registered manager is within its drain period."""
        assert self.interchange is not None
        now = time.time()
        with self.interchange.lock:
            managers = list(self.interchange.managers.values())
            drains = {m.manager_id: self.interchange.draining(m, now) for m in managers}
        found: set[str] = set()
        for block in self.book.live():
            if block.state != BlockState.RUNNING or block.cancel_requested:
                continue
            mine = [m.manager_id for m in managers if m.block_id == block.block_id]
            if mine and all(drains[m] for m in mine):
                found.add(block.block_id)
        return found

    def _check_start(self, block_id: str, state: str, message: str) -> None:
        """Count blocks that ended before any manager registered; after
        ``MAX_FAILED_STARTS`` in a row, fail the waiting tasks with the reason instead of
        letting them wait for blocks that cannot start (a bad worker_init, a wrong python)."""
        assert self.interchange is not None
        if block_id in self.interchange.blocks_seen or block_id in self._released:
            self._failed_starts = 0
            return
        self._failed_starts += 1
        if self._failed_starts < MAX_FAILED_STARTS:
            return
        self._failed_starts = 0
        tail = _log_tail(self.run_dir / "blocks" / f"{block_id}.log")
        why = (
            f"{MAX_FAILED_STARTS} blocks in a row ended before their manager connected (last: "
            f"{block_id} {state} {message}).{tail} Check engine.provider.worker_init and that "
            "the endpoint's Python is usable on the compute nodes"
        )
        failed = self.interchange.fail_queued(lambda r: failed_result(r.task, "block_failed", why))
        log.error("%s; failed %d waiting task(s)", why, failed)

    def _cancel_quietly(self, job_id: str) -> None:
        try:
            self.provider.cancel([job_id])
        except ProviderError as exc:
            log.warning("could not cancel job %s: %s", job_id, exc)

    def _write_status(self) -> None:
        """``<run_dir>/status.json``: the engine's view (managers, workers, blocks, queues) for
        tools on this host, e.g. ``outpost-endpoint status``; replaced atomically."""
        status = {"at": time.time(), **self.status()}
        write_json_private(self.run_dir / STATUS_FILE, status, indent=1, durable=False)

    def _block_loads(self, snap: dict[str, Any]) -> dict[str, strategy.BlockLoad]:
        assert self.interchange is not None
        now = time.monotonic()
        loads: dict[str, strategy.BlockLoad] = {}
        with self.interchange.lock:
            managers = list(self.interchange.managers.values())
        for block in self.book.live():
            if block.state != BlockState.RUNNING or block.cancel_requested:
                continue
            mine = [m for m in managers if m.block_id == block.block_id]
            if not mine:
                continue  # not registered yet: not idle, just starting
            busy = sum(len(m.tasks) for m in mine)
            idle = min(now - m.idle_since for m in mine) if busy == 0 else 0.0
            loads[block.block_id] = strategy.BlockLoad(busy_tasks=busy, idle_seconds=idle)
        return loads


def _hostname() -> str:
    import socket

    return socket.getfqdn()
