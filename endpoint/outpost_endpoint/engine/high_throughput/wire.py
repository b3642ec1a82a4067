"""The frames exchanged between the interchange (ROUTER) and managers (DEALER), and with workers.

Every message is a multipart message whose first frame names its kind.  A task or a result is
a small JSON *header* (every envelope field but the payloads) followed by its payloads as raw
frames: a 1 MB argument crosses the interchange, the manager and the worker's pipe as the same
bytes, never base64-encoded, JSON-escaped or pickled again (the envelopes' JSON wire form is
only for RabbitMQ), and nothing is unpickled outside a worker.

manager → interchange
  ``REGISTER json``  hostname, block_id, manager_id, workers, cores, accelerators, expires_at
  ``HEARTBEAT``      (also any other message counts as a sign of life)
  ``RESULT (task_id header value)+``  one or more results, three frames each
  ``LOST task_id json``  the worker running it died: exitcode, worker pid
interchange → manager
  ``TASK (header function args)+``  one or more tasks, three frames each; the header adds
  ``walltime``, ``received`` and ``nodes`` (host names for MPI tasks) to the task's fields
  ``CANCEL task_id``  ·  ``HEARTBEAT``  ·  ``STOP``
manager → worker (one pipe message per item): task header, extra environment JSON, function,
args; an empty header asks the worker to exit.  worker → manager: result header, value.
"""

from __future__ import annotations

import json
from typing import Any

from outpost.protocol import ResultEnvelope, TaskEnvelope

REGISTER = b"register"
HEARTBEAT = b"heartbeat"
RESULT = b"result"
LOST = b"lost"
TASK = b"task"
CANCEL = b"cancel"
STOP = b"stop"
#: frames per task in a TASK message and per result in a RESULT message
TASK_FRAMES = 3
RESULT_FRAMES = 3


def dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def loads(frame: bytes) -> dict[str, Any]:
    value = json.loads(frame)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def task_header(task: TaskEnvelope, **dispatch: Any) -> bytes:
    """``task``'s fields without its payloads, plus the interchange's ``dispatch`` fields."""
    header = task.header()
    header.update(dispatch)
    return dumps(header)


def task_from_header(header: dict[str, Any], function: bytes, args: bytes) -> TaskEnvelope:
    """The task again, from :func:`task_header`'s fields and its payload frames; not validated
    again (the interchange wrote the header of a task the endpoint had validated)."""
    return TaskEnvelope.trusted({**header, "function": function, "args": args})


def result_frames(result: ResultEnvelope) -> tuple[bytes, bytes]:
    """``(header, value)``: the result's fields with its value as a raw frame of its own; the
    header's ``value`` is ``""`` where the result has one (an empty value is a value too) and
    null where it has none."""
    header = result.header()
    header["value"] = None if result.value is None else ""
    return dumps(header), result.value or b""


def result_from_frames(header: bytes, value: bytes) -> ResultEnvelope:
    """The result again, from :func:`result_frames`; validated like any incoming envelope (the
    worker runs the user's code)."""
    result = ResultEnvelope.from_json(header)
    if result.value is not None:
        result.value = value
    return result
