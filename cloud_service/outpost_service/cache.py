"""An in-process cache of function payloads.

Functions are content-addressed and never change, so cached entries are never stale; the cache
only saves a database read per submit.  Bounded by total bytes, least recently used first out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class FunctionCache:
    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, function_id: str) -> bytes | None:
        with self._lock:
            payload = self._entries.get(function_id)
            if payload is not None:
                self._entries.move_to_end(function_id)
            return payload

    def put(self, function_id: str, payload: bytes) -> None:
        if len(payload) > self.max_bytes:
            return
        with self._lock:
            if function_id in self._entries:
                self._entries.move_to_end(function_id)
                return
            self._entries[function_id] = payload
            self._size += len(payload)
            while self._size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._size -= len(evicted)
