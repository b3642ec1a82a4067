"""The endpoint's HTTP conversation with the Outpost service: register, delete.

Small on purpose: the SDK's ``outpost.Client`` is the general HTTP client; the endpoint needs two
calls and, above all, errors that tell an operator on a login node what to fix (wrong URL,
service down, bad token).
"""

from __future__ import annotations

import platform
import re
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import requests

import outpost
from outpost.credentials import resolve_credentials
from outpost.errors import ConfigurationError
from outpost.protocol import PROTOCOL_VERSION
from outpost.protocol.tls import http_verify, tls_failure
from outpost_endpoint.amqp.connection import AmqpSettings
from outpost_endpoint.errors import (
    ConfigError,
    EndpointConnected,
    RegistrationError,
    ServiceRequestError,
)
from outpost_endpoint.paths import EndpointPaths

_TIMEOUT = 30.0


@dataclass(frozen=True)
class ServiceAccess:
    """Where the service is and the token to show it."""

    url: str
    token: str | None
    #: How HTTPS answers are verified: a CA bundle path, or True for the default store.
    verify: str | bool = True


def resolve_access(
    paths: EndpointPaths, configured_url: str | None, ca_file: str | None = None
) -> ServiceAccess:
    """URL: config.yaml, then ``OUTPOST_URL``, then ``~/.outpost/credentials.json``.
    Token: the endpoint's credentials.json, then ``OUTPOST_TOKEN``, then the user's file.
    CA bundle: ``ca_file`` (config.yaml ``service_ca_file``), then ``OUTPOST_CA_BUNDLE``, then
    requests' default (``REQUESTS_CA_BUNDLE``, its bundled CAs).

    URL and token come from the SDK's resolver (:func:`outpost.credentials.resolve_credentials`),
    the one place that decides which token may go where: a token stored for another URL than the
    one config.yaml names is refused here, before any request, instead of being sent to it."""
    try:
        verify = http_verify(ca_file)
    except ConfigurationError as exc:
        raise ConfigError(
            f"{exc} (service_ca_file in {paths.config}, or OUTPOST_CA_BUNDLE)"
        ) from exc
    how_to_fix = (
        f"set service_url in {paths.config} to the service that issued the token, or give "
        f"endpoint {paths.name!r} a token for its service: `outpost-endpoint configure "
        f"{paths.name} --service-url URL --token TOKEN --force`, OUTPOST_TOKEN, or "
        "`outpost login --url URL --token TOKEN`"
    )
    try:
        credentials = resolve_credentials(
            configured_url, token_file=paths.credentials, how_to_fix=how_to_fix
        )
    except ConfigurationError as exc:
        raise ConfigError(str(exc)) from exc
    return ServiceAccess(credentials.url, credentials.token, verify)


def host_metadata() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "outpost": outpost.__version__,
        "protocol": PROTOCOL_VERSION,
        "platform": platform.platform(),
    }


def pin_signing_key(
    known: dict[str, Any], settings: AmqpSettings, info_path: Path, service_url: str
) -> AmqpSettings:
    """Trust on first use of the service's task-signing key (kept in endpoint.json).

    A different key later means another service (or a forged one) answers at that URL: refuse
    to start rather than run its tasks.  A service that stops sending a key does not switch
    verification off: the pinned key stays in force."""
    pinned = known.get("task_signing_key")
    offered = settings.task_signing_key
    if isinstance(pinned, str) and pinned:
        if offered and offered != pinned:
            raise RegistrationError(
                f"the service at {service_url} signs tasks with key {offered[:12]}..., but "
                f"{info_path} pins key {pinned[:12]}... from the first registration; if the "
                "service's key was deliberately replaced, remove task_signing_key from that "
                "file and start the endpoint again"
            )
        return replace(settings, task_signing_key=pinned)
    return settings


class ServiceLink:
    """Registration and deletion of one endpoint on the service."""

    def __init__(self, access: ServiceAccess, *, timeout: float = _TIMEOUT) -> None:
        self.access = access
        self.timeout = timeout
        self._session = requests.Session()
        if access.token:
            self._session.headers["Authorization"] = f"Bearer {access.token}"

    def register(
        self,
        name: str,
        endpoint_id: str | None,
        metadata: dict[str, Any] | None = None,
        *,
        force: bool = False,
    ) -> dict[str, Any]:
        """``POST /v1/endpoints``; the answer holds ``endpoint_id`` and the ``amqp`` settings.
        ``metadata`` is added to the host description (e.g. the sealing public key).  Raises
        :class:`EndpointConnected` while another instance heartbeats, unless ``force``."""
        body: dict[str, Any] = {"name": name, "metadata": {**host_metadata(), **(metadata or {})}}
        if endpoint_id:
            body["endpoint_id"] = endpoint_id
        if force:
            body["force"] = True
        answer = self._request("POST", "/v1/endpoints", body, RegistrationError)
        if not isinstance(answer.get("endpoint_id"), str) or not isinstance(
            answer.get("amqp"), dict
        ):
            raise RegistrationError(
                f"the service at {self.access.url} answered registration without endpoint_id "
                f"and amqp settings ({answer!r}); is that URL an Outpost service?"
            )
        return answer

    def delete(self, endpoint_id: str) -> None:
        """``DELETE /v1/endpoints/<id>``; an endpoint the service does not know is fine."""
        try:
            self._request("DELETE", f"/v1/endpoints/{endpoint_id}", None, ServiceRequestError)
        except ServiceRequestError as exc:
            if exc.status != 404:
                raise

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None, error: type[RegistrationError]
    ) -> dict[str, Any]:
        url = self.access.url + path
        try:
            response = self._session.request(
                method, url, json=body, timeout=self.timeout, verify=self.access.verify
            )
        except requests.exceptions.SSLError as exc:
            problem = tls_failure(
                exc,
                ca_setting="service_ca_file in config.yaml (or OUTPOST_CA_BUNDLE)",
                cert_setting=None,
            )
            raise error(
                f"cannot talk HTTPS to the Outpost service at {self.access.url}: "
                f"{problem or _short(exc)}"
            ) from exc
        except requests.RequestException as exc:
            raise error(
                f"cannot reach the Outpost service at {self.access.url}: {_short(exc)}; is it "
                "running? set service_url in config.yaml or OUTPOST_URL"
            ) from exc
        if response.status_code < 400:
            try:
                data = response.json()
            except ValueError as exc:
                raise error(
                    f"the service at {self.access.url} answered {method} {path} with non-JSON "
                    f"({response.text[:200]!r}); is that URL an Outpost service?"
                ) from exc
            return data if isinstance(data, dict) else {}
        raise _http_error(error, method, path, self.access.url, response)


def _short(exc: requests.RequestException) -> str:
    """``Connection refused`` rather than three nested urllib3 reprs."""
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
    if match:
        return match.group(1)
    if isinstance(exc, requests.Timeout):
        return "no answer (timed out)"
    return str(exc)[:300]


def _error_details(response: Any) -> dict[str, Any]:
    try:
        details = response.json()["error"]["details"]
    except (ValueError, KeyError, TypeError):
        return {}
    return details if isinstance(details, dict) else {}


def _http_error(
    error: type[RegistrationError], method: str, path: str, base: str, response: Any
) -> RegistrationError:
    try:
        detail = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        detail = response.text[:200]
    status = response.status_code
    details = _error_details(response)
    if status == 409 and details.get("connected"):
        return EndpointConnected(
            f"the service at {base} refused {method} {path}: {detail}", details=details
        )
    if status == 401:
        hint = (
            "the token is missing or not accepted; pass one with `outpost-endpoint configure "
            "NAME --token TOKEN --force`, set OUTPOST_TOKEN, or run `outpost login`"
        )
    elif status == 403:
        hint = "the endpoint id in endpoint.json belongs to another user; delete endpoint.json"
    elif status == 409:
        hint = (
            "the name or the endpoint_id in endpoint.json clashes with another endpoint; choose "
            "another name, or delete endpoint.json to register under a new id"
        )
    elif status == 404:
        hint = f"is {base} the Outpost service URL (and the endpoint not deleted)?"
    else:
        hint = "see the service's logs"
    return error(
        f"the service at {base} refused {method} {path} (HTTP {status}: {detail}); {hint}",
        status=status,
    )
