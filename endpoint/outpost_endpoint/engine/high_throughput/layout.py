"""Worker layout on one node: how many workers, which accelerator and which cores each gets.

Pure functions, so the rules are unit-tested without starting anything.  The manager calls
:func:`plan_workers` once with what it sees on its node (its CPU set) and applies each
:class:`WorkerSlot` in the worker process before the first task runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

ACCELERATOR_VARIABLES = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "ZE_AFFINITY_MASK")
AFFINITY_KINDS = ("none", "block", "alternating", "block-reverse")


@dataclass(frozen=True)
class WorkerSlot:
    """What one worker is given: its index, its accelerator (if any) and its cores."""

    index: int
    accelerator: str | None = None
    cores: tuple[int, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


def worker_count(max_workers_per_node: int | None, accelerators: Sequence[str], cores: int) -> int:
    """One worker per accelerator when there are any (at most ``max_workers_per_node``),
    else ``max_workers_per_node``, else one per core."""
    if accelerators:
        if max_workers_per_node is None:
            return len(accelerators)
        return max(1, min(max_workers_per_node, len(accelerators)))
    if max_workers_per_node is not None:
        return max_workers_per_node
    return max(cores, 1)


def parse_affinity_list(text: str) -> list[tuple[int, ...]]:
    """``list:0-3,8:4-7`` → ``[(0, 1, 2, 3, 8), (4, 5, 6, 7)]`` (one core set per worker).

    Raises ValueError naming the bad part."""
    if not text.startswith("list:") or text == "list:":
        raise ValueError(f"{text!r} is not list:CORES[:CORES...], e.g. list:0-3:4-7")
    sets: list[tuple[int, ...]] = []
    for part in text[len("list:") :].split(":"):
        cores: list[int] = []
        for item in part.split(","):
            item = item.strip()
            try:
                if "-" in item:
                    low, high = (int(x) for x in item.split("-", 1))
                    if high < low:
                        raise ValueError
                    cores.extend(range(low, high + 1))
                else:
                    cores.append(int(item))
            except ValueError:
                raise ValueError(
                    f"{item!r} in {text!r} is not a core number or range like 0-3; "
                    "write list:0-3:4-7 (':' between workers, ',' between cores)"
                ) from None
        if any(c < 0 for c in cores):
            raise ValueError(f"{text!r} lists a negative core number")
        sets.append(tuple(cores))
    return sets


def check_affinity(value: str) -> str:
    """``value`` if it is a valid ``cpu_affinity`` setting, else ValueError."""
    if value in AFFINITY_KINDS:
        return value
    if value.startswith("list:"):
        parse_affinity_list(value)
        return value
    raise ValueError(f"is not one of: {', '.join(AFFINITY_KINDS)}, list:CORES[:CORES...]")


def assign_cores(affinity: str, cores: Sequence[int], workers: int) -> list[tuple[int, ...]]:
    """The cores each of ``workers`` workers is pinned to (empty tuples for ``none``).

    ``block`` gives worker i the i-th contiguous chunk; ``block-reverse`` the chunks from the
    end (worker 0 gets the last); ``alternating`` gives worker i cores i, i+n, i+2n... (on
    Polaris this spreads workers over both sockets' halves the way the seed's config intends).
    With fewer cores than workers, workers share cores round-robin rather than get none."""
    cores = sorted(cores)
    if affinity == "none" or workers < 1:
        return [() for _ in range(max(workers, 0))]
    if affinity.startswith("list:"):
        sets = parse_affinity_list(affinity)
        return [sets[i % len(sets)] for i in range(workers)]
    if not cores:
        return [() for _ in range(workers)]
    if len(cores) < workers:
        return [(cores[i % len(cores)],) for i in range(workers)]
    if affinity == "alternating":
        return [tuple(cores[i::workers]) for i in range(workers)]
    per = len(cores) // workers
    chunks = [tuple(cores[i * per : (i + 1) * per]) for i in range(workers)]
    if affinity == "block-reverse":
        chunks.reverse()
    if affinity in ("block", "block-reverse"):
        return chunks
    raise ValueError(f"cpu_affinity {affinity!r} is not one of {AFFINITY_KINDS} or list:...")


def plan_workers(
    *,
    max_workers_per_node: int | None,
    accelerators: Sequence[str],
    cpu_affinity: str,
    cores: Sequence[int],
    accelerator_variable: str = "CUDA_VISIBLE_DEVICES",
) -> list[WorkerSlot]:
    """Every worker of a node with its device, cores and environment additions."""
    n = worker_count(max_workers_per_node, accelerators, len(cores))
    core_sets = assign_cores(cpu_affinity, cores, n)
    slots = []
    for i in range(n):
        env: dict[str, str] = {}
        accelerator = accelerators[i] if accelerators else None
        if accelerator is not None:
            env[accelerator_variable] = accelerator
        if core_sets[i]:
            env["OMP_NUM_THREADS"] = str(len(core_sets[i]))
        slots.append(WorkerSlot(index=i, accelerator=accelerator, cores=core_sets[i], env=env))
    return slots
