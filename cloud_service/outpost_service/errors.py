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


class ApiError(ServiceError):
    """An error answered to an HTTP client; ``status`` is the HTTP status."""

    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details: dict[str, Any] = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(ApiError):
    """The body is not parseable (malformed or pathological JSON)."""

    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    """No token, or an unknown, revoked or expired one."""

    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    """The caller may not do this."""

    status = 403
    code = "forbidden"


class NotFound(ApiError):
    """The object does not exist or belongs to someone else (we never say which)."""

    status = 404
    code = "not_found"


class Conflict(ApiError):
    """The request clashes with the current state (e.g. a name already in use)."""

    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    """A body or a single payload is over its configured limit."""

    status = 413
    code = "payload_too_large"


class Unprocessable(ApiError):
    """The JSON parsed but a field is missing, wrongly typed or out of range."""

    status = 422
    code = "invalid_request"


class TooManyRequests(ApiError):
    """Over a limit (the token's request rate, or waiting long-polls); ``Retry-After`` says
    when to come back."""

    status = 429
    code = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        seconds = max(1, int(retry_after + 0.999))
        super().__init__(message, code=code, details={**(details or {}), "retry_after": seconds})
        self.headers = {"Retry-After": str(seconds)}


class BrokerUnavailable(ApiError):
    """RabbitMQ could not confirm the operation; the client may retry later."""

    status = 503
    code = "broker_unavailable"


class DatabaseUnavailable(ApiError):
    """The database could not be reached (restarting, refusing connections, a lost
    connection, a deadlock it broke): nothing of the request was committed unless
    ``details`` says so, and the client may retry -- ``Retry-After`` says when."""

    status = 503
    code = "database_unavailable"

    def __init__(self, message: str, *, retry_after: int = 2) -> None:
        super().__init__(message, details={"retry_after": retry_after})
        self.headers = {"Retry-After": str(retry_after)}
