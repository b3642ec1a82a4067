"""Outpost: run Python functions and shell/MPI commands on HPC machines from anywhere.

>>> from outpost import Client, Executor, ShellFunction, MPIFunction
"""

__version__ = "0.1.0"

from outpost import errors
from outpost.client import Client
from outpost.executor import Executor, OutpostFuture
from outpost.shell import MPIFunction, ShellFunction, ShellResult

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
