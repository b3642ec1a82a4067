"""HTTP transport to the Outpost service: one ``requests.Session`` per thread, retries, errors.

The SDK's :class:`~outpost.client.Client` and the endpoint's registration both talk to the
service through :class:`Transport`, so timeouts, TLS verification, retries and error messages
are the same on both sides.  What differs is only *which settings the reader should check*:
``OUTPOST_URL`` for a script, ``service_url`` in config.yaml for an operator.  That is a
:class:`Guidance`, given by each side.

Every failure becomes an :mod:`outpost.errors` :class:`~outpost.errors.ServiceError` that names
the URL and says how to fix it.  Only idempotent calls are retried (backoff with jitter) on
connection errors and 502/503/504; 429 is always retried (the service did nothing).  A
non-idempotent call is retried only when the request provably never left this machine.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
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

#: How often a call is retried unless its caller says otherwise.
DEFAULT_RETRIES = 3
#: The longest ``Retry-After`` honoured, in seconds.
MAX_RETRY_AFTER = 60.0

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


@dataclass(frozen=True)
class Guidance:
    """What the error messages tell their reader to check; the defaults are the SDK's."""

    #: Where the service URL is set.
    url_setting: str = "OUTPOST_URL"
    #: Where the CA bundle for HTTPS is set.
    ca_setting: str = f"{CA_BUNDLE_ENV} (or Client(verify=PATH))"
    #: A sentence per HTTP status, added to the error message.
    hints: Mapping[int, str] = field(
        default_factory=lambda: {
            401: "check the token: run `outpost login` or set OUTPOST_TOKEN",
            403: "the object belongs to another user; ask its owner to share it",
            413: "the request body is over the service's limit; send fewer or smaller tasks",
        }
    )


class Transport:
    """Sends JSON requests to one service with one token."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float,
        retries: int = DEFAULT_RETRIES,
        verify: str | bool | None = None,
        guidance: Guidance | None = None,
        user_agent: str = "outpost-sdk",
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.retries = retries
        #: Given with every request: a session-level value would lose to REQUESTS_CA_BUNDLE.
        self.verify = http_verify(verify)
        self.guidance = guidance or Guidance()
        self._token = token
        self._user_agent = user_agent
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = self._user_agent
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
                failure = self._unreachable(method, path, exc)
                retryable = failure.code != "tls_error"  # retrying cannot fix a certificate
                if retryable and attempt < self.retries and (idempotent or _never_sent(exc)):
                    self._pause(method, url, attempt, _short(exc))
                    attempt += 1
                    continue
                raise failure from exc
            retryable = response.status_code == 429 or (
                idempotent and response.status_code in _RETRY_STATUSES
            )
            if retryable and attempt < self.retries:
                self._pause(method, url, attempt, f"HTTP {response.status_code}", response)
                attempt += 1
                continue
            return self._decode(method, url, response)

    def _unreachable(
        self, method: str, path: str, exc: requests.RequestException
    ) -> ServiceUnavailableError:
        """The error for a request that got no answer: a TLS trust failure, or no connection."""
        problem = isinstance(exc, requests.exceptions.SSLError) and tls_failure(
            exc, ca_setting=self.guidance.ca_setting, cert_setting=None
        )
        if problem:
            return ServiceUnavailableError(
                f"{method} {self.url}{path} failed: cannot talk HTTPS to the Outpost service at "
                f"{self.url}: {problem}",
                code="tls_error",
            )
        # An HTTPS-only port resets a plain-HTTP request (or answers 400: see _decode).
        reset = self.url.startswith("http://") and "reset by peer" in str(exc)
        return ServiceUnavailableError(
            f"{method} {self.url}{path} failed: {_short(exc)}; cannot reach the Outpost service "
            f"at {self.url}: is it running and reachable at that URL? (check "
            f"{self.guidance.url_setting}"
            + ("; if the service speaks HTTPS, use an https:// URL)" if reset else ")"),
            code="connection_error",
        )

    def _pause(self, method: str, url: str, attempt: int, why: str, response: Any = None) -> None:
        delay = backoff_delay(attempt)
        retry_after = response.headers.get("Retry-After") if response is not None else None
        if retry_after and retry_after.isdigit():
            delay = min(float(retry_after), MAX_RETRY_AFTER)
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
                f"({self.guidance.url_setting})",
                status=status,
                code="plain_http_to_https",
            )
        if status < 400:
            if body is None:
                raise ServiceUnavailableError(
                    f"{method} {url} answered HTTP {status} with a body that is not JSON "
                    f"({response.text[:200]!r}); is {self.guidance.url_setting} pointing at an "
                    "Outpost service?",
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
        hint = self.guidance.hints.get(status)
        raise cls(f"{text}; {hint}" if hint else text, status=status, code=code, details=details)


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the connection was never established, so the server saw nothing."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and exc.args:
        reason = getattr(exc.args[0], "reason", None)
        return isinstance(reason, NewConnectionError)
    return False


def _short(exc: requests.RequestException) -> str:
    """``Connection refused`` rather than three nested urllib3 reprs."""
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
    if match:
        return match.group(1)
    if isinstance(exc, requests.Timeout):
        return "no answer (timed out)"
    return str(exc)[:300]
