"""HTTP transport of the SDK: one ``requests.Session`` per thread, retries, error mapping.

Kept apart from :mod:`outpost.client` so the API methods read as a list of routes.  Every
failure becomes an :mod:`outpost.errors` exception that names the URL and says how to fix it.
Only idempotent calls are retried (backoff with jitter) on connection errors and 502/503/504;
task submission counts as idempotent because it carries a client ``request_id`` the service
dedups by.  A non-idempotent call is retried only when the request provably never left this
machine.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import requests
from urllib3.exceptions import NewConnectionError

from outpost.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ServiceError,
    ServiceUnavailableError,
)
from outpost.protocol.tls import CA_BUNDLE_ENV, http_verify, tls_failure
from outpost.runtime.backoff import backoff_delay

log = logging.getLogger(__name__)

_RETRY_STATUSES = {502, 503, 504}
_ERROR_CLASSES: dict[int, type[ServiceError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: InvalidRequestError,
    413: InvalidRequestError,
    422: InvalidRequestError,
}
_HINTS = {
    401: "check the token: run `outpost login` or set OUTPOST_TOKEN",
    403: "the object belongs to another user; ask its owner to share it",
    413: "the request body is over the service's limit; send fewer or smaller tasks",
}


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the connection was never established, so the server saw nothing."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and exc.args:
        reason = getattr(exc.args[0], "reason", None)
        return isinstance(reason, NewConnectionError)
    return False


class Transport:
    """Sends JSON requests to one service with one token."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float,
        retries: int,
        verify: str | bool | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.retries = retries
        #: Given with every request: a session-level value would lose to REQUESTS_CA_BUNDLE.
        self.verify = http_verify(verify)
        self._token = token
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = "outpost-sdk"
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        idempotent: bool,
        auth: bool = True,
        timeout: float | None = None,
    ) -> Any:
        """Send a request and return the decoded JSON answer, or raise a ServiceError."""
        url = self.url + path
        headers = {"Authorization": f"Bearer {self._token}"} if auth and self._token else {}
        attempt = 0
        while True:
            try:
                response = self._session().request(
                    method,
                    url,
                    json=json,
                    headers=headers,
                    timeout=timeout or self.timeout,
                    verify=self.verify,
                )
            except requests.RequestException as exc:
                untrusted = isinstance(exc, requests.exceptions.SSLError) and tls_failure(
                    exc,
                    ca_setting=f"{CA_BUNDLE_ENV} (or Client(verify=PATH))",
                    cert_setting=None,
                )
                if untrusted:  # retrying cannot fix a certificate
                    raise ServiceUnavailableError(
                        f"{method} {url} failed: {untrusted}", status=0, code="tls_error"
                    ) from exc
                if attempt < self.retries and (idempotent or _never_sent(exc)):
                    self._pause(method, url, attempt, exc)
                    attempt += 1
                    continue
                # An HTTPS-only port resets a plain-HTTP request (or answers 400, below).
                reset = url.startswith("http://") and "reset by peer" in str(exc)
                raise ServiceUnavailableError(
                    f"{method} {url} failed: {type(exc).__name__}: {exc}; is the Outpost service "
                    "running and reachable at that URL? (check OUTPOST_URL"
                    + ("; if the service speaks HTTPS, use an https:// URL)" if reset else ")"),
                    status=0,
                    code="connection_error",
                ) from exc
            retryable = response.status_code == 429 or (  # 429: nothing was done, always safe
                idempotent and response.status_code in _RETRY_STATUSES
            )
            if retryable and attempt < self.retries:
                self._pause(method, url, attempt, response.status_code, response)
                attempt += 1
                continue
            return self._decode(method, url, response)

    def _pause(
        self, method: str, url: str, attempt: int, why: object, response: Any = None
    ) -> None:
        delay = backoff_delay(attempt)
        retry_after = response.headers.get("Retry-After") if response is not None else None
        if retry_after and retry_after.isdigit():
            delay = min(float(retry_after), 60.0)
        log.warning("%s %s failed (%s); retrying in %.1fs", method, url, why, delay)
        time.sleep(delay)

    def _decode(self, method: str, url: str, response: requests.Response) -> Any:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if body is None and status == 400 and "only speaks HTTPS" in response.text:
            raise InvalidRequestError(
                f"{method} {url} reached a port that only speaks HTTPS; use an https:// URL "
                "(OUTPOST_URL)",
                status=status,
                code="plain_http_to_https",
            )
        if status < 400:
            if body is None:
                raise ServiceUnavailableError(
                    f"{method} {url} answered HTTP {status} with a body that is not JSON; is "
                    "OUTPOST_URL pointing at an Outpost service?",
                    status=status,
                    code="bad_response",
                )
            return body
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            code = str(error.get("code", "error"))
            message = str(error.get("message", ""))
            details = error.get("details") if isinstance(error.get("details"), dict) else {}
        else:
            code, message, details = "error", (response.text or "")[:500], {}
        text = f"{method} {url} failed with HTTP {status} ({code}): {message}"
        if status >= 500:
            raise ServiceUnavailableError(
                f"{text}; the service at {self.url} is failing or overloaded: retry later or "
                "ask its operator",
                status=status,
                code=code,
                details=details,
            )
        cls = _ERROR_CLASSES.get(status, InvalidRequestError)
        if status in _HINTS:
            text = f"{text}; {_HINTS[status]}"
        raise cls(text, status=status, code=code, details=details)
