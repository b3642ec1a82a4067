"""The ``concurrent.futures`` face of Outpost: :class:`Executor` and :class:`OutpostFuture`."""

from outpost.executor.executor import Executor
from outpost.executor.future import OutpostFuture

__all__ = ["Executor", "OutpostFuture"]
