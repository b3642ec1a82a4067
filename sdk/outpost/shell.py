"""Shell and MPI commands as tasks: ``ShellFunction``, ``MPIFunction`` and ``ShellResult``.

These are plain callables defined in an importable module, so cloudpickle ships them *by
reference* (the endpoint has ``outpost`` installed) together with their few attributes, and one
instance can be submitted many times.  Like Globus Compute, a non-zero exit status is not an
exception: the :class:`ShellResult` carries it, with the tail of stdout/stderr.

Contract with the endpoint's worker (implement it there)
--------------------------------------------------------
* ``OUTPOST_RESOURCE_SPECIFICATION``: before calling a task function, the worker sets this
  environment variable to the JSON of the task's ``resource_specification`` (``{}`` when none),
  e.g. ``{"num_nodes": 2, "ranks_per_node": 4, "walltime": 60}``.
* ``OUTPOST_MPI_LAUNCHER`` (optional): a launcher template the engine knows works on its
  machine, with ``str.format`` placeholders among ``{num_ranks}``, ``{ranks_per_node}``,
  ``{num_nodes}``, ``{launcher_options}`` and ``{nodefile}`` (``OUTPOST_MPI_NODEFILE``, a file
  listing the hosts of the task's nodes, empty when unset), e.g.
  ``mpiexec -n {num_ranks} -ppn {ranks_per_node} --hostfile {nodefile} {launcher_options}``.
  Without it :class:`MPIFunction` uses ``mpiexec -n {num_ranks} -ppn {ranks_per_node}``, which
  works with MPICH's hydra and Cray PALS.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass
from typing import Any

from outpost.errors import ConfigurationError
from outpost.shell_template import check_template, fill, launcher_options

ENV_RESOURCE_SPECIFICATION = "OUTPOST_RESOURCE_SPECIFICATION"
ENV_MPI_LAUNCHER = "OUTPOST_MPI_LAUNCHER"
ENV_MPI_NODEFILE = "OUTPOST_MPI_NODEFILE"
DEFAULT_MPI_LAUNCHER = "mpiexec -n {num_ranks} -ppn {ranks_per_node}"
#: Exit status reported when a command ran past its walltime (as coreutils ``timeout`` does).
TIMEOUT_RETURNCODE = 124
#: Longest line kept in a snippet, so one huge line cannot blow the result size limit.
_MAX_LINE_CHARS = 10_000


@dataclass(frozen=True)
class ShellResult:
    """What a shell command produced: exit status and the tail of its output."""

    returncode: int
    stdout: str
    stderr: str
    cmd: str


def _tail(text: str, max_lines: int) -> str:
    lines = text.splitlines(keepends=True)
    clipped = [
        line if len(line) <= _MAX_LINE_CHARS else line[:_MAX_LINE_CHARS] + "…[line truncated]\n"
        for line in lines[-max_lines:]
        if max_lines > 0
    ]
    if len(lines) <= max_lines:
        return "".join(clipped)
    note = f"[outpost: output truncated, showing the last {max_lines} of {len(lines)} lines]\n"
    return note + "".join(clipped)


class ShellFunction:
    """A shell command run on the endpoint; call it with keyword arguments to fill ``{names}``.

    ``cmd`` is formatted like ``str.format(**kwargs)`` (write ``{{`` and ``}}`` for literal
    braces), except that every value is quoted for the shell (:mod:`outpost.shell_template`):
    ``ShellFunction("ls {path}")(path="my dir; rm x")`` lists the directory literally named
    ``my dir; rm x``, so on a shared endpoint a submitter's values can never become commands.
    Write placeholders bare or inside plain quotes; one where no quoting is safe (inside
    backticks, ``${...}``, a comment, after ``<<``) is refused when the function is made.  The
    command runs with ``/bin/sh`` in the worker's environment (so ``$CUDA_VISIBLE_DEVICES`` is
    the worker's GPU), and its stdout/stderr are captured, keeping the last ``snippet_lines``
    lines of each.  ``walltime`` (seconds) kills the command's whole process group and reports
    return code 124.
    """

    def __init__(
        self,
        cmd: str,
        *,
        walltime: float | None = None,
        snippet_lines: int = 1000,
        name: str | None = None,
    ) -> None:
        if not isinstance(cmd, str) or not cmd.strip():
            raise ValueError(f"ShellFunction needs a non-empty command string, got {cmd!r}")
        if walltime is not None and walltime <= 0:
            raise ValueError(f"walltime must be a positive number of seconds, got {walltime!r}")
        check_template(cmd)
        self.cmd = cmd
        self.walltime = walltime
        self.snippet_lines = snippet_lines
        self.name = name or type(self).__name__
        self.__name__ = self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cmd!r}, walltime={self.walltime!r})"

    def format_command(self, **kwargs: Any) -> str:
        """The command with ``{placeholders}`` filled from ``kwargs``, each value shell-quoted."""
        try:
            return fill(self.cmd, kwargs)
        except (KeyError, IndexError) as exc:
            raise ValueError(
                f"command {self.cmd!r} refers to {{{exc.args[0]}}} but no such keyword argument "
                f"was given (got {sorted(kwargs)}); pass it, or write {{{{ }}}} for literal braces"
            ) from exc

    def __call__(self, **kwargs: Any) -> ShellResult:
        return self.run(self.format_command(**kwargs))

    def run(self, command: str) -> ShellResult:
        """Run ``command`` in a new session so a timeout can kill everything it started."""
        proc = subprocess.Popen(
            command,
            shell=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=self.walltime)
            returncode = proc.returncode
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            stdout, stderr = proc.communicate()
            stderr += f"\n[outpost: command killed after its walltime of {self.walltime} s]\n"
            returncode = TIMEOUT_RETURNCODE
        return ShellResult(
            returncode=int(returncode),
            stdout=_tail(stdout, self.snippet_lines),
            stderr=_tail(stderr, self.snippet_lines),
            cmd=command,
        )


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def resource_specification() -> dict[str, Any]:
    """The running task's resource specification, from ``OUTPOST_RESOURCE_SPECIFICATION``."""
    text = os.environ.get(ENV_RESOURCE_SPECIFICATION, "") or "{}"
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(
            f"{ENV_RESOURCE_SPECIFICATION} is not JSON ({exc}): the endpoint's worker must set it "
            "to the task's resource specification"
        ) from exc
    if not isinstance(spec, dict):
        raise ConfigurationError(f"{ENV_RESOURCE_SPECIFICATION} must be a JSON object, got {text}")
    return spec


def _positive_int(spec: dict[str, Any], key: str) -> int | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"resource specification {key!r} must be a positive int, got {value!r}"
        )
    return value


def mpi_launcher(spec: dict[str, Any], template: str | None = None) -> str:
    """The launcher prefix for ``spec`` (``num_nodes``, ``ranks_per_node``, ``num_ranks``,
    ``launcher_options``), from ``template`` or ``OUTPOST_MPI_LAUNCHER`` or the default.

    ``launcher_options`` comes from the submitter: it is split into words like a shell would,
    each word quoted, and refused if it holds shell metacharacters (``;``, ``|``, ``$``...), so
    it can only ever add arguments to the launcher.  Every other value is quoted too."""
    nodes = _positive_int(spec, "num_nodes")
    per_node = _positive_int(spec, "ranks_per_node")
    ranks = _positive_int(spec, "num_ranks")
    if ranks is None and per_node is not None:
        ranks = per_node * (nodes or 1)
    if ranks is None:
        raise ConfigurationError(
            "an MPIFunction needs ranks: set ex.resource_specification = {'num_nodes': N, "
            f"'ranks_per_node': R}} (or 'num_ranks'); got {spec!r}"
        )
    nodes = nodes or 1
    per_node = per_node or -(-ranks // nodes)
    given = spec.get("launcher_options") or ""
    if not isinstance(given, str):
        raise ConfigurationError(f"'launcher_options' must be a string, got {given!r}")
    options = launcher_options(given)  # quoted argv words; shell metacharacters refused
    template = template or os.environ.get(ENV_MPI_LAUNCHER) or DEFAULT_MPI_LAUNCHER
    values: dict[str, object] = {
        "num_ranks": ranks,
        "ranks_per_node": per_node,
        "num_nodes": nodes,
        "launcher_options": options,
        "nodefile": os.environ.get(ENV_MPI_NODEFILE, ""),
    }
    try:
        launcher = fill(template, values, prequoted={"launcher_options"})
    except (KeyError, IndexError, ValueError, ConfigurationError) as exc:
        raise ConfigurationError(
            f"MPI launcher template {template!r} is invalid ({exc}); use placeholders among "
            f"{sorted(values)}"
        ) from exc
    if options and "{launcher_options}" not in template:
        launcher = f"{launcher} {options}"
    return launcher.strip()


class MPIFunction(ShellFunction):
    """A shell command started under the endpoint's MPI launcher.

    The ranks come from the task's resource specification (``ex.resource_specification =
    {"num_nodes": 2, "ranks_per_node": 4}``), which the worker passes in
    ``OUTPOST_RESOURCE_SPECIFICATION``; the launcher is ``OUTPOST_MPI_LAUNCHER`` or
    ``mpiexec -n {num_ranks} -ppn {ranks_per_node}`` (see the module docstring).
    """

    def __call__(self, **kwargs: Any) -> ShellResult:
        command = self.format_command(**kwargs)
        return self.run(f"{mpi_launcher(resource_specification())} {command}")
