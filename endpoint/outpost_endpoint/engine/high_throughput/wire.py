"""The frames exchanged between the interchange (ROUTER) and managers (DEALER).

Every message is a multipart message whose first frame names its kind; JSON carries metadata and
task/result bodies travel in the envelopes' own wire form (:mod:`outpost.protocol`), so nothing
is unpickled outside a worker.

manager → interchange
  ``REGISTER json``  hostname, block_id, manager_id, workers, cores, accelerators, expires_at
  ``HEARTBEAT``      (also any other message counts as a sign of life)
  ``RESULT task_id result-bytes``
  ``LOST task_id json``  the worker running it died: exitcode, worker pid
interchange → manager
  ``TASK json task-bytes``  json: nodes (host names for MPI tasks), walltime
  ``CANCEL task_id``  ·  ``HEARTBEAT``  ·  ``STOP``
"""

from __future__ import annotations

import json
from typing import Any

REGISTER = b"register"
HEARTBEAT = b"heartbeat"
RESULT = b"result"
LOST = b"lost"
TASK = b"task"
CANCEL = b"cancel"
STOP = b"stop"


def dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def loads(frame: bytes) -> dict[str, Any]:
    value = json.loads(frame)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value
