"""End-to-end encryption for an :class:`~outpost.executor.Executor` (``encrypt=True``).

The executor seals each task's arguments for the endpoint's public key (published by the
endpoint in its registration metadata as ``sealing_public_key``) and asks for the result to be
sealed for its own key.  That key belongs to the task group: it is kept in
``$OUTPOST_HOME/sealing_keys/<task_group_id>`` (0600), so :meth:`Executor.reload_tasks` in a
later process with the same home can still open the results; a process without that file
cannot, and says so.  The endpoint keys the service returns are pinned (trust on first use,
or an explicit ``endpoint_key``; see :mod:`outpost.endpoint_keys`).  See docs/SECURITY.md,
"Sealed tasks".
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from outpost.client import Client
from outpost.endpoint_keys import check_endpoint_key
from outpost.errors import ConfigurationError, SealingError
from outpost.protocol import ResultEnvelope
from outpost.protocol.conventions import outpost_home
from outpost.protocol.sealing import (
    args_context,
    error_context,
    is_sealed,
    load_or_create_key,
    open_sealed,
    public_key_from_text,
    public_key_text,
    result_context,
    seal,
    unpack_error_details,
)


def key_path(task_group_id: str) -> Path:
    """Where the client key of a task group is kept."""
    return outpost_home() / "sealing_keys" / task_group_id


class Sealer:
    """Seals arguments for endpoints and opens results for one task group."""

    def __init__(
        self,
        client: Client,
        task_group_id: str,
        endpoint_key: str | Mapping[str, str] | None = None,
    ) -> None:
        self._client = client
        #: Explicit pins: one key or fingerprint for every endpoint, or one per endpoint id.
        self._pinned = endpoint_key
        self.path = key_path(task_group_id)
        self._key = load_or_create_key(self.path)
        self.public_key = public_key_text(self._key)
        self._endpoints: dict[str, X25519PublicKey] = {}
        self._lock = threading.Lock()

    def endpoint_key(self, endpoint_id: str) -> X25519PublicKey:
        """The endpoint's public key from the service (asked once per endpoint), checked
        against its pin (:func:`outpost.endpoint_keys.check_endpoint_key`)."""
        with self._lock:
            known = self._endpoints.get(endpoint_id)
        if known is not None:
            return known
        metadata = self._client.get_endpoint(endpoint_id).get("metadata") or {}
        text = metadata.get("sealing_public_key") if isinstance(metadata, dict) else None
        if text is None:
            raise ConfigurationError(
                f"endpoint {endpoint_id} publishes no sealing key, so it cannot receive "
                "encrypted tasks: upgrade the endpoint's outpost and restart it "
                "(`outpost-endpoint restart NAME`), or use Executor(encrypt=False)"
            )
        key = public_key_from_text(text, f"the sealing key of endpoint {endpoint_id}")
        pinned = self._pinned
        if isinstance(pinned, Mapping):
            pinned = pinned.get(endpoint_id)
        check_endpoint_key(endpoint_id, text, pinned)
        with self._lock:
            self._endpoints[endpoint_id] = key
        return key

    def seal_args(
        self, payload: bytes, endpoint_id: str, function_id: str, task_group_id: str
    ) -> bytes:
        context = args_context(endpoint_id, function_id, task_group_id, self.public_key)
        return seal(payload, self.endpoint_key(endpoint_id), context)

    def open_result(self, envelope: ResultEnvelope, trusted: bool = False) -> ResultEnvelope:
        """``envelope`` with its sealed value and error details opened.  Opening loads no
        pickle: the opened value is judged like any other (``outpost.result_trust``), and the
        error details are JSON (an older endpoint's pickled details are read only when
        ``trusted``)."""
        value = envelope.value
        if is_sealed(value):
            value = open_sealed(
                value or b"",
                self._key,
                result_context(envelope.task_id),
                f"result of task {envelope.task_id} (key {self.path})",
            )
        error = envelope.error
        if error is not None and is_sealed(error.payload):
            details = open_sealed(
                error.payload or b"",
                self._key,
                error_context(envelope.task_id),
                f"error of task {envelope.task_id} (key {self.path})",
            )
            message, traceback, payload = unpack_error_details(details, trusted)
            error = error.model_copy(
                update={"message": message, "traceback": traceback, "payload": payload}
            )
        return envelope.model_copy(update={"value": value, "error": error})


def refuse_sealed(envelope: ResultEnvelope) -> None:
    """Raise if ``envelope`` is sealed: this executor has no key to open it."""
    error = envelope.error
    if is_sealed(envelope.value) or (error is not None and is_sealed(error.payload)):
        raise SealingError(
            f"the result of task {envelope.task_id} is end-to-end encrypted; open it with "
            "Executor(task_group_id=<its group>, encrypt=True) in a process whose OUTPOST_HOME "
            "holds sealing_keys/<its group> (the key of the process that submitted it)"
        )
