"""The high-throughput engine: interchange, per-node managers, pinned workers, blocks."""

from outpost_endpoint.engine.high_throughput.engine import HighThroughputEngine

__all__ = ["HighThroughputEngine"]
