"""End-to-end encrypted tasks on the endpoint side (see docs/SECURITY.md, "Sealed tasks").

A client that asks for encryption seals a task's arguments for the endpoint's public key and
puts its own public key in ``resource_specification["_outpost_result_key"]``.  The worker opens
the arguments with the endpoint's private key, whose file the endpoint process names in
``OUTPOST_SEALING_KEY_FILE`` for its workers, and seals the result value and the error details
for the client.  The service only ever sees ciphertext.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from outpost.errors import SealingError
from outpost.protocol import ErrorInfo, ResultEnvelope, TaskEnvelope
from outpost.protocol.sealing import (
    RESULT_KEY_FIELD,
    args_context,
    error_context,
    is_sealed,
    load_key,
    open_sealed,
    pack_error_details,
    public_key_from_text,
    result_context,
    seal,
)

#: Set by the endpoint process for its workers: the path of its sealing private key.
SEALING_KEY_ENV = "OUTPOST_SEALING_KEY_FILE"
#: What a sealed error says in its plain fields; the real message travels sealed.
SEALED_MESSAGE = "(sealed: the error details are encrypted for the submitting client)"


@functools.lru_cache(maxsize=4)
def _key(path: str) -> X25519PrivateKey:
    return load_key(Path(path))


def endpoint_key() -> X25519PrivateKey:
    """This endpoint's sealing private key, as named by its endpoint process."""
    path = os.environ.get(SEALING_KEY_ENV)
    if not path:
        raise SealingError(
            f"this worker has no endpoint sealing key ({SEALING_KEY_ENV} is not set); workers "
            "started outside the endpoint process must inherit its environment, and the "
            "endpoint directory (its sealing_key file) must be readable on the compute nodes"
        )
    return _key(path)


def open_task(task: TaskEnvelope) -> TaskEnvelope:
    """``task`` with its sealed arguments opened (unchanged if they are not sealed)."""
    result_key = task.resource_specification.get(RESULT_KEY_FIELD)
    if result_key is not None:
        public_key_from_text(result_key, f"resource_specification[{RESULT_KEY_FIELD!r}]")
    if not is_sealed(task.args):
        return task
    context = args_context(task.endpoint_id, task.function_id, task.task_group_id, result_key)
    args = open_sealed(task.args, endpoint_key(), context, f"arguments of task {task.task_id}")
    return task.model_copy(update={"args": args})


def seal_result(task: TaskEnvelope, result: ResultEnvelope) -> ResultEnvelope:
    """Seal ``result``'s value and error details for the client key the task names, if any.

    The error's class name and ``reason`` stay readable (the SDK and the service need them to
    pick the exception type and the task state); message, traceback and the pickled exception
    are sealed together."""
    text = task.resource_specification.get(RESULT_KEY_FIELD)
    if text is None:
        return result
    recipient = public_key_from_text(text, f"resource_specification[{RESULT_KEY_FIELD!r}]")
    value = result.value
    if value is not None:
        value = seal(value, recipient, result_context(task.task_id))
    error = result.error
    if error is not None:
        details = pack_error_details(error.message, error.traceback, error.payload)
        error = ErrorInfo(
            type=error.type,
            message=SEALED_MESSAGE,
            reason=error.reason,
            traceback="",
            payload=seal(details, recipient, error_context(task.task_id)),
        )
    return result.model_copy(update={"value": value, "error": error})
