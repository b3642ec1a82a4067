"""Which nodes a block (or a task inside it) holds: ``PBS_NODEFILE`` and ``SLURM_JOB_NODELIST``.

Slurm writes node lists in its compressed "hostlist" form (``nid[001-003,007],gpu01``); MPI
launchers and the per-task node files need plain names, in order and without duplicates.  PBS
writes one line per MPI slot (a node appears ``ncpus`` times with ``place=scatter``), so the node
file is de-duplicated keeping the first appearance.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from outpost_endpoint.errors import EndpointError


class NodeListError(EndpointError, ValueError):
    """A node list (from the scheduler's environment) could not be parsed."""


def expand_hostlist(text: str) -> list[str]:
    """Expand a Slurm hostlist expression into node names, in order.

    Handles comma-separated items, bracketed ranges with zero padding kept (``nid[001-003]`` ->
    ``nid001 nid002 nid003``), several bracket groups in one name (``rack[1-2]-n[1-2]`` gives the
    cartesian product, as Slurm does), and text after a bracket (``a[1-2]b``).
    """
    names: list[str] = []
    for item in _split_top_level(text.strip(), text):
        names.extend(_expand_item(item, text))
    return names


def _split_top_level(text: str, whole: str) -> list[str]:
    items: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "[":
            depth += 1
            if depth > 1:
                raise NodeListError(f"nested '[' in node list {whole!r}")
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise NodeListError(f"unbalanced ']' in node list {whole!r}")
        if char == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise NodeListError(f"unbalanced '[' in node list {whole!r}")
    items.append("".join(current))
    cleaned = [item.strip() for item in items]
    if any(not item for item in cleaned) and text:
        raise NodeListError(f"empty name in node list {whole!r}")
    return [item for item in cleaned if item]


def _expand_item(item: str, whole: str) -> list[str]:
    start = item.find("[")
    if start < 0:
        return [item]
    end = item.index("]", start)
    prefix, body, rest = item[:start], item[start + 1 : end], item[end + 1 :]
    tails = _expand_item(rest, whole) if rest else [""]
    return [f"{prefix}{value}{tail}" for value in _expand_range(body, whole) for tail in tails]


def _expand_range(body: str, whole: str) -> list[str]:
    values: list[str] = []
    for part in body.split(","):
        part = part.strip()
        if not part:
            raise NodeListError(f"empty range in node list {whole!r}")
        low, sep, high = part.partition("-")
        if not low.isdigit() or (sep and not high.isdigit()):
            raise NodeListError(f"range {part!r} in node list {whole!r} is not N or N-M")
        if not sep:
            values.append(low)
            continue
        first, last = int(low), int(high)
        if last < first:
            raise NodeListError(f"range {part!r} in node list {whole!r} goes backwards")
        width = len(low) if low.startswith("0") or len(low) == len(high) else 0
        values.extend(str(n).zfill(width) for n in range(first, last + 1))
    return values


def unique(names: Iterable[str]) -> list[str]:
    """``names`` without repeats, first appearance kept."""
    return list(dict.fromkeys(name for name in names if name))


def read_nodefile(path: str | os.PathLike[str]) -> list[str]:
    """The distinct host names in a PBS/hostfile-style node file (one name per line; ``#``
    comments and ``host slots=N`` / ``host:N`` suffixes ignored)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise NodeListError(f"cannot read node file {path}: {exc}") from exc
    names = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line.split()[0].split(":")[0])
    return unique(names)


def block_nodes(environ: Mapping[str, str] | None = None) -> list[str]:
    """The nodes of the batch job this process runs in: ``PBS_NODEFILE``, then
    ``SLURM_JOB_NODELIST`` (or ``SLURM_NODELIST``), then this host alone."""
    env = os.environ if environ is None else environ
    if env.get("PBS_NODEFILE"):
        return read_nodefile(env["PBS_NODEFILE"])
    slurm = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if slurm:
        return unique(expand_hostlist(slurm))
    return [os.uname().nodename]


def write_nodefile(path: str | os.PathLike[str], nodes: Iterable[str]) -> Path:
    """Write one host per line (the form ``mpiexec --hostfile`` and ``srun -w`` read)."""
    target = Path(path)
    target.write_text("".join(f"{node}\n" for node in nodes))
    return target


def this_node(environ: Mapping[str, str] | None = None) -> str:
    """The name the scheduler gives the node this process runs on: ``SLURMD_NODENAME`` in a
    Slurm step (it may differ from the host name: emulated nodes, ``NodeHostname``), else the
    short host name (what PBS writes in ``PBS_NODEFILE`` and ``exec_host``).  A manager should
    report this name, so node files for MPI tasks name nodes the launcher knows."""
    env = os.environ if environ is None else environ
    return env.get("SLURMD_NODENAME") or os.uname().nodename.split(".")[0]
