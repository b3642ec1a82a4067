"""The one exception tree of Outpost.

Every error Outpost raises derives from :class:`OutpostError`, so callers can catch at whatever
level suits them (like httpx's ``HTTPError`` tree).  The service and the endpoint root their own
errors here too.  Messages say what was wrong, with which value, and how to fix it.
"""

from __future__ import annotations

from typing import Any


class OutpostError(Exception):
    """Root of every Outpost error."""


# --------------------------------------------------------------------------- protocol
class ProtocolError(OutpostError):
    """A message crossing a process boundary could not be understood."""


class MalformedMessageError(ProtocolError):
    """A message is not valid JSON or lacks a required field."""


class ProtocolVersionError(ProtocolError):
    """A message was written by a newer or older protocol version than this one reads."""


class SerializationError(OutpostError):
    """A value could not be serialized or deserialized."""


class SealingError(SerializationError):
    """An end-to-end encrypted (sealed) payload could not be sealed or opened: wrong key,
    altered bytes, or a payload moved to another task (see :mod:`outpost.protocol.sealing`)."""


class EndpointKeyChangedError(SealingError):
    """The service offered a sealing key for an endpoint other than the one pinned for it
    (trust on first use, or ``Executor(endpoint_key=...)``): possibly a service substituting
    its own key to read sealed arguments (see :mod:`outpost.endpoint_keys`)."""


class SerializerVersionMismatch(SerializationError):
    """Deserialization failed and the writer's Python/cloudpickle versions differ from ours."""


class UntrustedResultError(SerializationError):
    """A result from an endpoint the caller neither owns nor trusts is a pickle, which could run
    code when loaded, so it was not loaded (see :mod:`outpost.result_trust`).  The message names
    the endpoint, its owner and how to opt in; ``endpoint_id``, ``owner`` and ``task_id`` hold
    them."""

    def __init__(self, message: str, *, task_id: str, endpoint_id: str, owner: str) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.endpoint_id = endpoint_id
        self.owner = owner


class PayloadTooLargeError(SerializationError):
    """A serialized payload exceeds the configured size limit."""

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class ArgumentsNotDataError(SerializationError):
    """A task for an endpoint the submitter does not own has arguments that are not plain JSON
    data (see :mod:`outpost.protocol.data_only`): pickles could run code as the owner."""


# --------------------------------------------------------------------------- configuration
class ConfigurationError(OutpostError):
    """Configuration (arguments, environment, files) is missing or invalid."""


# --------------------------------------------------------------------------- service API
class ServiceError(OutpostError):
    """The service answered a request with an error.

    ``status`` is the HTTP status, ``code`` the machine-readable error code and ``details`` the
    structured details the service sent along.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str = "error",
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.details = details or {}


class AuthenticationError(ServiceError):
    """The token is missing, unknown, revoked or expired (HTTP 401)."""


class PermissionDeniedError(ServiceError):
    """The object exists but belongs to someone else (HTTP 403)."""


class NotFoundError(ServiceError):
    """The object does not exist or is not visible to this user (HTTP 404)."""


class InvalidRequestError(ServiceError):
    """The request was malformed or wrongly typed (HTTP 400/413/422)."""


class ServiceUnavailableError(ServiceError):
    """The service could not be reached or is temporarily unable to answer."""


class SubmitAbandonedError(ServiceUnavailableError):
    """An executor stopped retrying submits: the service stayed unreachable longer than
    ``submit_retry_for`` (or the script was interrupted).  The calls it could not deliver are
    saved in ``path`` (``details["path"]``); ``outpost tasks resubmit PATH`` or
    ``Executor.resubmit_unsent(PATH)`` submits them later, without duplicating any."""

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        status: int = 0,
        code: str = "submit_abandoned",
        details: dict[str, Any] | None = None,
    ) -> None:
        details = {**(details or {}), "path": path}
        super().__init__(message, status=status, code=code, details=details)
        self.path = path


# --------------------------------------------------------------------------- task outcomes
class TaskError(OutpostError):
    """A task did not produce a value."""


class RemoteExecutionError(TaskError):
    """The task raised an exception whose class could not be rebuilt here.

    ``remote_type`` names the original class; the remote traceback is in ``remote_traceback``.
    """

    def __init__(self, message: str, *, remote_type: str = "", remote_traceback: str = "") -> None:
        super().__init__(message)
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback


class RemoteBaseException(RemoteExecutionError):
    """The task raised a ``BaseException`` that is not an ``Exception`` (``SystemExit`` from
    ``sys.exit()``, ``KeyboardInterrupt``, ``GeneratorExit``).

    Re-raising the original in the client would exit or interrupt the *client's* script (a
    task's ``sys.exit(3)`` once made the laptop script exit with status 3), so the endpoint and
    the SDK both turn it into this ordinary exception: ``remote_type`` names the original class
    and ``code`` keeps ``SystemExit.code``.  Build one with :func:`remote_base_exception`.
    """

    def __init__(
        self,
        message: str,
        *,
        remote_type: str = "",
        remote_traceback: str = "",
        code: Any = None,
    ) -> None:
        super().__init__(message, remote_type=remote_type, remote_traceback=remote_traceback)
        self.code = code


class RemoteSystemExit(RemoteBaseException):
    """The task called ``sys.exit(code)`` (or raised ``SystemExit``); ``code`` is its status."""


def remote_base_exception(exc: BaseException, remote_traceback: str = "") -> BaseException:
    """``exc`` itself if it is an ``Exception``; otherwise the :class:`RemoteBaseException`
    (:class:`RemoteSystemExit` for ``SystemExit``) that stands for it, so that raising the
    result never exits or interrupts the process that raises it."""
    if isinstance(exc, Exception):
        return exc
    kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
    if isinstance(exc, SystemExit):
        return RemoteSystemExit(
            f"the task called sys.exit({exc.code!r}) (raised {kind}); it ended the task, not "
            "this process",
            remote_type=kind,
            remote_traceback=remote_traceback,
            code=exc.code,
        )
    return RemoteBaseException(
        f"the task raised {kind}({str(exc)!r}), a BaseException that is not an Exception; it "
        "ended the task, not this process",
        remote_type=kind,
        remote_traceback=remote_traceback,
    )


class TaskTimeout(TaskError, TimeoutError):
    """The task ran longer than its ``walltime`` resource specification."""


class WorkerLost(TaskError):
    """The worker process running the task died (segfault, OOM, ``os._exit``)."""


class ManagerLost(TaskError):
    """The node manager running the task stopped heartbeating."""


class DependencyError(TaskError):
    """A task this task depends on failed, so this one never ran."""


class TaskCancelledError(TaskError):
    """The task was cancelled before it produced a result."""


class ResultNotReady(OutpostError):
    """The task has not finished yet."""
