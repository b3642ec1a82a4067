"""Providers: where blocks of nodes come from (the local machine, PBS Pro, Slurm)."""

from outpost_endpoint.providers.base import BlockState, BlockStatus, Provider

__all__ = ["BlockState", "BlockStatus", "Provider"]
