"""Outpost: run Python functions and shell/MPI commands on HPC machines from anywhere.

>>> from outpost import Client, Executor, ShellFunction, MPIFunction

The names load on first use (PEP 562): a process that needs only :mod:`outpost.protocol` -- an
endpoint's engine managers and workers on compute nodes -- does not import the HTTP client and
the executor on its way to its first task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from outpost.runtime.lazy import lazy_attributes

__version__ = "0.1.0"

if TYPE_CHECKING:
    from outpost import errors
    from outpost.client import Client
    from outpost.executor import Executor, OutpostFuture
    from outpost.shell import MPIFunction, ShellFunction, ShellResult

_EXPORTS = {
    "Client": "outpost.client",
    "Executor": "outpost.executor",
    "OutpostFuture": "outpost.executor",
    "MPIFunction": "outpost.shell",
    "ShellFunction": "outpost.shell",
    "ShellResult": "outpost.shell",
    "errors": "outpost.errors",
}

__all__ = [
    "Client",
    "Executor",
    "MPIFunction",
    "OutpostFuture",
    "ShellFunction",
    "ShellResult",
    "__version__",
    "errors",
]


__getattr__ = lazy_attributes(__name__, _EXPORTS)
