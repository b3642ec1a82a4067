"""Launchers: how a block's command is started on each of its nodes (simple, mpiexec, srun)."""

from outpost_endpoint.launchers.base import Launcher

__all__ = ["Launcher"]
