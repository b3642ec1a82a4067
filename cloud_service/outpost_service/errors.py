"""The service's exception tree, rooted in :class:`outpost.errors.OutpostError`.

API errors carry everything the one error handler in :mod:`outpost_service.app` needs to build
``{"error": {"code", "message", "details"}}``: views raise them and never build error responses
themselves, so every error looks the same to clients.
"""

from __future__ import annotations

from typing import Any

from outpost.errors import OutpostError


class ServiceError(OutpostError):
    """Root of every error raised inside the cloud service."""


class StoreError(ServiceError):
    """The SQL store cannot be used (e.g. its schema version is not the one this code reads)."""


class BrokerError(ServiceError):
    """RabbitMQ could not be reached or refused an operation after bounded retries."""


class RouteError(ServiceError):
    """A route of the app declares no scope (see :mod:`outpost_service.api.routing`)."""


class ApiError(ServiceError):
    """An error answered to an HTTP client; ``status`` is the HTTP status.

    Each kind names its status and code in its class line (``class NotFound(ApiError,
    status=404, code="not_found")``); ``retry_after`` (seconds) adds a ``Retry-After`` header
    and ``details.retry_after`` for the errors a client should retry later.
    """

    status = 500
    code = "internal_error"

    def __init_subclass__(cls, *, status: int | None = None, code: str | None = None) -> None:
        super().__init_subclass__()
        if status is not None:
            cls.status = status
        if code is not None:
            cls.code = code

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details: dict[str, Any] = details or {}
        self.headers: dict[str, str] = {}
        if retry_after is not None:
            seconds = max(1, int(retry_after + 0.999))
            self.details = {**self.details, "retry_after": seconds}
            self.headers["Retry-After"] = str(seconds)

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(ApiError, status=400, code="bad_request"):
    """The body is not parseable (malformed or pathological JSON)."""


class Unauthorized(ApiError, status=401, code="unauthorized"):
    """No token, or an unknown, revoked or expired one."""


class Forbidden(ApiError, status=403, code="forbidden"):
    """The caller may not do this: the token lacks the route's scope (``insufficient_scope``),
    or the endpoint's allow-list refuses the function (``function_not_allowed``)."""


class NotFound(ApiError, status=404, code="not_found"):
    """The object does not exist or belongs to someone else (we never say which)."""


class Conflict(ApiError, status=409, code="conflict"):
    """The request clashes with the current state (e.g. a name already in use)."""


class PayloadTooLarge(ApiError, status=413, code="payload_too_large"):
    """A body or a single payload is over its configured limit."""


class Unprocessable(ApiError, status=422, code="invalid_request"):
    """The JSON parsed but a field is missing, wrongly typed or out of range
    (``invalid_field``: ``details.field`` names it as a client writes it)."""


class TooManyRequests(ApiError, status=429, code="rate_limited"):
    """Over a limit (the token's request rate, or waiting long-polls); ``Retry-After`` says
    when to come back."""


class BrokerUnavailable(ApiError, status=503, code="broker_unavailable"):
    """RabbitMQ could not confirm the operation; the client may retry later."""


class NotReady(ApiError, status=503, code="not_ready"):
    """``GET /ready``: the database or the broker did not answer; ``details`` has each check
    (``ok``, ``detail``: why not, ``seconds``)."""


class DatabaseUnavailable(ApiError, status=503, code="database_unavailable"):
    """The database could not be reached (restarting, refusing connections, a lost
    connection, a deadlock it broke): nothing of the request was committed unless
    ``details`` says so, and the client may retry -- ``Retry-After`` says when."""

    def __init__(self, message: str, *, retry_after: int = 2) -> None:
        super().__init__(message, retry_after=retry_after)
