"""``outpost.protocol``: the one definition of every message that crosses a process boundary.

The SDK, the service and the endpoint all speak through these types and nothing else: the
service never imports the endpoint and vice versa.  Envelopes are versioned JSON documents, one
pydantic model each (:mod:`outpost.protocol.messages`), whose opaque payloads (functions,
arguments, results) are produced by :mod:`outpost.protocol.serialize`.
No transport (pika, flask, requests) is imported here.
"""

from outpost.protocol.envelopes import (
    CancelRequest,
    EndpointStatus,
    ErrorInfo,
    ResultEnvelope,
    TaskEnvelope,
    TaskRequest,
    TaskState,
    decode_message,
)
from outpost.protocol.serialize import (
    DEFAULT_PAYLOAD_LIMIT,
    Strategy,
    deserialize,
    function_id_for,
    is_plain_data,
    payload_strategy,
    serialize,
    serialize_function,
    serialize_result,
)
from outpost.protocol.version import PROTOCOL_VERSION, runtime_versions

__all__ = [
    "DEFAULT_PAYLOAD_LIMIT",
    "PROTOCOL_VERSION",
    "CancelRequest",
    "EndpointStatus",
    "ErrorInfo",
    "ResultEnvelope",
    "Strategy",
    "TaskEnvelope",
    "TaskRequest",
    "TaskState",
    "decode_message",
    "deserialize",
    "function_id_for",
    "is_plain_data",
    "payload_strategy",
    "runtime_versions",
    "serialize",
    "serialize_function",
    "serialize_result",
]
