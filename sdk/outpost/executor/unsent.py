"""The file of submits an executor could not deliver, and reading it back to resubmit.

When the service stays unreachable longer than ``submit_retry_for`` (or the user interrupts the
script), the calls accepted by ``Executor.submit`` but not stored by the service are written to
``$OUTPOST_HOME/unsent/<task_group_id>-<UTC time>.json`` (0600) instead of being dropped:
per call the serialized function and arguments (the same bytes the service would have
received, never sealed, so nothing has to be rebuilt here), its endpoint, group and resource
specification.  Calls are grouped in batches that each carry a ``request_id``: a batch whose
``POST /v1/tasks`` may have reached the service keeps the id it was sent with, the others get
a fresh one, so resubmitting the file (``outpost tasks resubmit FILE`` or
``Executor.resubmit_unsent(FILE)``) never stores a call twice, even when run twice (the service
answers a repeated request id with the tasks it stored).  The outer format is JSON, so reading
the file never unpickles anything on this machine.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from outpost.errors import ConfigurationError, SubmitAbandonedError
from outpost.protocol import function_id_for
from outpost.protocol.conventions import outpost_home
from outpost.runtime.files import write_json_private

FORMAT = "outpost-unsent/1"
#: The most calls, and base64 bytes of arguments, per batch in the file (a resubmit request).
MAX_CALLS = 1000
MAX_BYTES = 16 * 1024 * 1024


@dataclass
class UnsentCall:
    """One accepted call the service never stored."""

    name: str
    function: bytes
    args: bytes
    endpoint_id: str
    task_group_id: str
    resource_specification: dict[str, Any]
    #: The parents' task ids of a task the service holds (its args name them).
    depends_on: list[str] = field(default_factory=list)


@dataclass
class UnsentBatch:
    """Calls sent (or to be sent) in one ``POST /v1/tasks`` with ``request_id``."""

    request_id: str
    calls: list[UnsentCall]


@dataclass
class UnsentRecord:
    """The content of an unsent file."""

    task_group_id: str
    service_url: str
    encrypt: bool
    #: The writing executor's id and how many calls it accepted in all: resubmitting declares
    #: that count for it, so the group's ``submitted`` matches what the script meant to run.
    client_id: str
    submitted: int
    batches: list[UnsentBatch] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return sum(len(b.calls) for b in self.batches)


def default_path(task_group_id: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return outpost_home() / "unsent" / f"{task_group_id}-{stamp}-{uuid.uuid4().hex[:6]}.json"


def split(calls: list[UnsentCall], request_id: str | None = None) -> list[UnsentBatch]:
    """``calls`` as batches within the service's limits; ``request_id`` (kept for a batch that
    may have reached the service) applies to the whole list, which is then never split."""
    if request_id is not None:
        return [UnsentBatch(request_id, list(calls))] if calls else []
    batches: list[UnsentBatch] = []
    size = 0
    for call in calls:
        item = len(call.args) * 4 // 3
        if not batches or len(batches[-1].calls) >= MAX_CALLS or size + item > MAX_BYTES:
            batches.append(UnsentBatch(str(uuid.uuid4()), []))
            size = 0
        batches[-1].calls.append(call)
        size += item
    return batches


class UnsentWriter:
    """Accumulates an executor's unsent batches in one file, rewritten atomically on each add."""

    def __init__(self, record: UnsentRecord, path: Path | None = None) -> None:
        self.record = record
        self.path = path or default_path(record.task_group_id)
        self._lock = threading.Lock()

    def add(self, batches: list[UnsentBatch]) -> Path:
        with self._lock:
            known = {b.request_id for b in self.record.batches}
            self.record.batches.extend(b for b in batches if b.request_id not in known and b.calls)
            write(self.record, self.path)
            return self.path


def abandoned_error(record: UnsentRecord, path: str, what: str) -> SubmitAbandonedError:
    """The error that tells the user ``what`` happened, where the calls are and what to run."""
    group = record.task_group_id
    return SubmitAbandonedError(
        f"{what}: {record.calls} task(s) of group {group} were not submitted; they are saved in "
        f"{path}: resubmit them with `outpost tasks resubmit {path}` (or "
        f"Executor(task_group_id='{group}').resubmit_unsent('{path}')); resubmitting never "
        "stores a task twice",
        path=path,
        details={"task_group_id": group, "unsent": record.calls},
    )


def write(record: UnsentRecord, path: Path) -> None:
    functions: dict[str, str] = {}
    batches = []
    for batch in record.batches:
        calls = []
        for call in batch.calls:
            digest = function_id_for(call.function)
            functions.setdefault(digest, _b64(call.function))
            calls.append(
                {
                    "name": call.name,
                    "function": digest,
                    "args": _b64(call.args),
                    "endpoint_id": call.endpoint_id,
                    "task_group_id": call.task_group_id,
                    "resource_specification": call.resource_specification,
                    "depends_on": call.depends_on,
                }
            )
        batches.append({"request_id": batch.request_id, "calls": calls})
    data = {
        "format": FORMAT,
        "task_group_id": record.task_group_id,
        "service_url": record.service_url,
        "encrypt": record.encrypt,
        "client_id": record.client_id,
        "submitted": record.submitted,
        "calls": record.calls,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "resubmit": f"outpost tasks resubmit {path}",
        "functions": functions,
        "batches": batches,
    }
    write_json_private(path, data, indent=None)


def read(path: str | os.PathLike[str]) -> UnsentRecord:
    """The record in ``path``; a clear :class:`ConfigurationError` for anything else."""
    where = Path(path)
    try:
        data = json.loads(where.read_text())
    except OSError as exc:
        raise ConfigurationError(f"cannot read the unsent-tasks file {where}: {exc}") from exc
    except ValueError as exc:
        raise ConfigurationError(
            f"{where} is not an unsent-tasks file written by an Outpost executor (not JSON: {exc})"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigurationError(
            f"{where} is not an unsent-tasks file (expected format {FORMAT!r}, got "
            f"{data.get('format') if isinstance(data, dict) else type(data).__name__!r})"
        )
    try:
        functions = {k: base64.b64decode(v, validate=True) for k, v in data["functions"].items()}
        record = UnsentRecord(
            task_group_id=str(data["task_group_id"]),
            service_url=str(data.get("service_url", "")),
            encrypt=bool(data.get("encrypt", False)),
            client_id=str(data["client_id"]),
            submitted=int(data["submitted"]),
        )
        for batch in data["batches"]:
            calls = [
                UnsentCall(
                    name=str(c.get("name", "task")),
                    function=functions[c["function"]],
                    args=base64.b64decode(c["args"], validate=True),
                    endpoint_id=str(c["endpoint_id"]),
                    task_group_id=str(c["task_group_id"]),
                    resource_specification=dict(c.get("resource_specification") or {}),
                    depends_on=[str(p) for p in c.get("depends_on") or []],
                )
                for c in batch["calls"]
            ]
            record.batches.append(UnsentBatch(str(batch["request_id"]), calls))
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
        raise ConfigurationError(
            f"the unsent-tasks file {where} is damaged ({type(exc).__name__}: {exc}); it was "
            "not changed, and nothing was submitted"
        ) from exc
    return record


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
