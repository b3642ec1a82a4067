"""The endpoint's HTTP conversation with the Outpost service: register, delete.

The requests go through the SDK's transport (:mod:`outpost.runtime.http`: the same timeouts,
TLS checks, retries and messages as a script's); what is the endpoint's own is the guidance in
those messages, which tells an operator on a login node what to fix (wrong URL, service down,
bad token), and the endpoint's exceptions they are raised as.
"""

from __future__ import annotations

import platform
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import outpost
from outpost.credentials import resolve_credentials
from outpost.errors import ConfigurationError, ServiceError
from outpost.protocol import PROTOCOL_VERSION
from outpost.protocol.tls import http_verify
from outpost.runtime.http import DEFAULT_RETRIES, Guidance, Transport
from outpost_endpoint.amqp.connection import AmqpSettings
from outpost_endpoint.errors import (
    ConfigError,
    EndpointConnected,
    RegistrationError,
    ServiceRequestError,
)
from outpost_endpoint.paths import EndpointPaths

_TIMEOUT = 30.0
#: What the transport's errors tell an operator on a login node to check.
_GUIDANCE = Guidance(
    url_setting="service_url in config.yaml or OUTPOST_URL",
    ca_setting="service_ca_file in config.yaml (or OUTPOST_CA_BUNDLE)",
    hints={
        401: "the token is missing or not accepted; pass one with `outpost-endpoint configure "
        "NAME --token TOKEN --force`, set OUTPOST_TOKEN, or run `outpost login`",
        403: "the endpoint id in endpoint.json belongs to another user; delete endpoint.json",
        404: "is service_url in config.yaml the Outpost service URL (and the endpoint not "
        "deleted)?",
    },
)
#: Added to a 409 refusal of registration that is not about a connected instance.
_CLASH_HINT = (
    "the name or the endpoint_id in endpoint.json clashes with another endpoint; choose another "
    "name, or delete endpoint.json to register under a new id"
)


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
        f"{paths.name} --service-url {{url}} --token TOKEN --force`, OUTPOST_TOKEN, or "
        "`outpost login --url {url} --token TOKEN`"
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

    def __init__(
        self, access: ServiceAccess, *, timeout: float = _TIMEOUT, retries: int = DEFAULT_RETRIES
    ) -> None:
        self.access = access
        self._http = Transport(
            access.url,
            access.token,
            timeout=timeout,
            retries=retries,
            verify=access.verify,
            guidance=_GUIDANCE,
            user_agent="outpost-endpoint",
        )

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
        :class:`EndpointConnected` while another instance heartbeats, unless ``force``.

        Not idempotent (each registration rotates the broker password), so it is retried only
        when the request never reached the service."""
        body: dict[str, Any] = {"name": name, "metadata": {**host_metadata(), **(metadata or {})}}
        if endpoint_id:
            body["endpoint_id"] = endpoint_id
        if force:
            body["force"] = True
        try:
            answer = self._http.request("POST", "/v1/endpoints", json=body, idempotent=False)
        except ServiceError as exc:
            if exc.status != 409:
                raise RegistrationError(str(exc), status=exc.status) from exc
            if exc.details.get("connected"):
                raise EndpointConnected(str(exc), details=exc.details) from exc
            raise RegistrationError(f"{exc}; {_CLASH_HINT}", status=409) from exc
        if not (
            isinstance(answer, dict)
            and isinstance(answer.get("endpoint_id"), str)
            and isinstance(answer.get("amqp"), dict)
        ):
            raise RegistrationError(
                f"the service at {self.access.url} answered registration without endpoint_id "
                f"and amqp settings ({answer!r}); is that URL an Outpost service?"
            )
        return answer

    def delete(self, endpoint_id: str) -> None:
        """``DELETE /v1/endpoints/<id>``; an endpoint the service does not know is fine."""
        try:
            self._http.request("DELETE", f"/v1/endpoints/{endpoint_id}", idempotent=True)
        except ServiceError as exc:
            if exc.status != 404:
                raise ServiceRequestError(str(exc), status=exc.status) from exc
