"""Per-endpoint RabbitMQ users, made through the RabbitMQ management HTTP API.

Why: with one shared broker login, any endpoint (a daemon on someone's login node) could read
every other endpoint's task queue and publish forged results for any task.  Each endpoint gets
its own user ``outpost-ep-<endpoint_id>`` whose permissions (in the service's vhost only) are:

* configure: nothing (``^$``) -- the service declares every queue and exchange;
* read: only its task queue ``P.tasks.<id>`` (on RabbitMQ >= 4.2.6 this also limits *passive*
  declarations to that queue: see :data:`PASSIVE_DECLARE_CHECKED` for older brokers);
* write: only the result exchange ``P.results``, and the topic permission on that exchange
  restricts routing keys to ``<id>.result`` / ``<id>.status``.

The password is random, handed out once in the registration answer and never stored by the
service; registering again sets a new password and closes the user's open connections (so a
stolen old password stops working).  Deleting the endpoint deletes the user.

Each endpoint user also gets RabbitMQ *user limits* (``max-connections``, ``max-channels``;
an endpoint needs 2 connections of 1 channel each), so stolen credentials cannot open
thousands of connections.  And the dead-letter queue ``P.dead``, which anyone able to make a
queue reject messages fills, is capped by an *operator policy*
(:meth:`BrokerAdmin.limit_dead_letters`): a policy rather than queue arguments because an
existing queue cannot be redeclared with new arguments (PRECONDITION_FAILED), while a policy
applies to queues made by any earlier version, and an operator policy merges with the
deployment's own policies (the lower limit wins) instead of replacing them.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pika
import requests

from outpost.protocol.conventions import redact_url
from outpost_service.broker.topology import Topology
from outpost_service.errors import BrokerError

log = logging.getLogger(__name__)

#: Prefix of every per-endpoint RabbitMQ user name.
USER_PREFIX = "outpost-ep-"
#: Seconds for one management API call.
TIMEOUT = 10.0
#: RabbitMQ user limits of an endpoint user: its daemon needs 2 connections (tasks, results)
#: of one channel each; the rest is room for reconnects that overlap a dying connection.
DEFAULT_USER_LIMITS = {"max-connections": 8, "max-channels": 16}


#: The first RabbitMQ release that checks permissions on *passive* queue declarations
#: (rabbitmq-server #16085, relaxed by #16272 to "any permission on the queue").  Before it,
#: any user of the vhost can passive-declare any queue whose name it knows and so read its
#: depth and consumer count: with per-endpoint users, another endpoint's queue depth.
PASSIVE_DECLARE_CHECKED = (4, 2, 6)


def passive_declare_checked(version: tuple[int, ...] | None) -> bool:
    """Whether a broker of ``version`` refuses passive declarations of queues a user has no
    permission on (our endpoint users: every queue but their own)."""
    return version is not None and version >= PASSIVE_DECLARE_CHECKED


def endpoint_user(endpoint_id: str) -> str:
    return f"{USER_PREFIX}{endpoint_id}"


def default_management_url(amqp_url: str) -> str:
    """``http://<amqp host>:<amqp port + 10000>/`` with the AMQP URL's credentials.

    5672 + 10000 is RabbitMQ's standard 15672; a node on another port (the test recipes' private
    nodes) follows the same rule.  ``amqps://`` gives ``https://``."""
    params = pika.URLParameters(amqp_url)
    parts = urlsplit(amqp_url)
    scheme = "https" if parts.scheme == "amqps" else "http"
    user = quote(params.credentials.username, safe="")
    password = quote(params.credentials.password, safe="")
    host = params.host if ":" not in params.host else f"[{params.host}]"
    return f"{scheme}://{user}:{password}@{host}:{params.port + 10000}/"


def with_credentials(url: str, user: str, password: str) -> str:
    """``url`` (an AMQP URL) with its user and password replaced."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _api(management_url: str) -> str:
    """The ``/api`` base of ``management_url`` (its credentials left out)."""
    parts = urlsplit(management_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BrokerError(
            f"management_url must be http(s)://[user:password@]host:port/, got "
            f"{redact_url(management_url)!r}"
        )
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}/api"


class BrokerAdmin:
    """Creates, rotates and deletes the RabbitMQ users of endpoints (see the module docstring)."""

    def __init__(
        self,
        management_url: str,
        amqp_url: str,
        topology: Topology,
        *,
        ca_file: str = "",
        user_limits: dict[str, int] | None = None,
        other_management_urls: Sequence[str] = (),
    ) -> None:
        """``other_management_urls``: the APIs of a cluster's other nodes, tried in order when
        ``management_url``'s does not answer (same credentials)."""
        self.apis = [_api(url) for url in (management_url, *other_management_urls)]
        parts = urlsplit(management_url)
        amqp = pika.URLParameters(amqp_url)
        self.auth = (
            unquote(parts.username) if parts.username else amqp.credentials.username,
            unquote(parts.password) if parts.password else amqp.credentials.password,
        )
        self.vhost = amqp.virtual_host
        self.topology = topology
        #: An ``https://`` API is checked against the broker's CA (OUTPOST_AMQP_CA_FILE), else
        #: requests' default; given per request, where REQUESTS_CA_BUNDLE cannot override it.
        self._verify: str | bool = ca_file or True
        self._session = requests.Session()
        #: RabbitMQ user limits given to every endpoint user (name -> value).
        self.user_limits = dict(DEFAULT_USER_LIMITS if user_limits is None else user_limits)

    @property
    def api(self) -> str:
        """The management API in use (the last one that answered)."""
        return self.apis[0]

    def grant(self, endpoint_id: str) -> tuple[str, str]:
        """Create (or rotate) the endpoint's user; returns ``(user, new password)``."""
        user = endpoint_user(endpoint_id)
        password = secrets.token_urlsafe(24)
        vhost = quote(self.vhost, safe="")
        self._call("PUT", f"/users/{quote(user)}", {"password": password, "tags": ""})
        self._call("PUT", f"/permissions/{vhost}/{quote(user)}", self.permissions(endpoint_id))
        self._call(
            "PUT",
            f"/topic-permissions/{vhost}/{quote(user)}",
            self.topic_permissions(endpoint_id),
        )
        for limit, value in self.user_limits.items():
            self._call("PUT", f"/user-limits/{quote(user, safe='')}/{limit}", {"value": value})
        self._close_connections(user)
        return user, password

    def limit_dead_letters(self, max_length: int, max_bytes: int, ttl: float) -> None:
        """Cap the dead-letter queue: at most ``max_length`` messages and ``max_bytes`` bytes
        (the oldest are dropped first), each kept at most ``ttl`` seconds.  Idempotent."""
        vhost = quote(self.vhost, safe="")
        name = quote(self.dead_letter_policy, safe="")
        self._call(
            "PUT",
            f"/operator-policies/{vhost}/{name}",
            {
                "pattern": f"^{re.escape(self.topology.dead_queue)}$",
                "apply-to": "queues",
                "priority": 10,
                "definition": {
                    "max-length": int(max_length),
                    "max-length-bytes": int(max_bytes),
                    "message-ttl": int(ttl * 1000),
                },
            },
        )

    def broker_version(self) -> tuple[int, ...] | None:
        """RabbitMQ's version (``/api/overview``), or None when it does not say."""
        overview = self._call("GET", "/overview", None)
        text = str(overview.get("rabbitmq_version", "")) if isinstance(overview, dict) else ""
        parts = re.match(r"(\d+)\.(\d+)\.(\d+)", text)
        return tuple(int(p) for p in parts.groups()) if parts else None

    def queues(self, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """Every queue of the service's vhost whose name starts with the topology's prefix:
        ``name``, ``messages_ready``, ``messages_unacknowledged`` and ``consumers`` (RabbitMQ
        refreshes these figures every few seconds: its statistics interval)."""
        vhost = quote(self.vhost, safe="")
        columns = "name,messages_ready,messages_unacknowledged,consumers"
        found = self._call("GET", f"/queues/{vhost}?columns={columns}", None, timeout=timeout)
        prefix = self.topology.prefix + "."
        return [q for q in found or () if str(q.get("name", "")).startswith(prefix)]

    @property
    def dead_letter_policy(self) -> str:
        """The name of the operator policy that caps ``P.dead``."""
        return f"{self.topology.prefix}.dead-letter-limits"

    def revoke(self, endpoint_id: str) -> None:
        """Delete the endpoint's user (and so its access); an absent user is fine."""
        user = endpoint_user(endpoint_id)
        self._call("DELETE", f"/users/{quote(user)}", None, missing_ok=True)
        self._close_connections(user)

    def permissions(self, endpoint_id: str) -> dict[str, str]:
        return {
            "configure": "^$",
            "write": f"^{re.escape(self.topology.result_exchange)}$",
            "read": f"^{re.escape(self.topology.task_queue(endpoint_id))}$",
        }

    def topic_permissions(self, endpoint_id: str) -> dict[str, str]:
        return {
            "exchange": self.topology.result_exchange,
            "write": f"^{re.escape(endpoint_id)}\\.(result|status)$",
            "read": "^$",
        }

    def _close_connections(self, user: str) -> None:
        """Close the open connections of ``user`` (after a rotation or deletion).

        ``DELETE /connections/username/U`` closes them through RabbitMQ's connection tracking,
        which knows a connection the moment it opens.  Closing them one by one by name does
        not do: ``DELETE /connections/NAME`` looks the name up in the statistics database,
        which learns of a connection only after its ~5 s interval, so a daemon that had just
        connected answered 404 and kept serving with its old password.
        """
        self._call("DELETE", f"/connections/username/{quote(user, safe='')}", None, missing_ok=True)

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        missing_ok: bool = False,
        timeout: float = TIMEOUT,
    ) -> Any:
        response = None
        for index, api in enumerate(list(self.apis)):
            try:
                response = self._session.request(
                    method, api + path, json=body, auth=self.auth, timeout=timeout,
                    verify=self._verify,
                )  # fmt: skip
            except requests.RequestException as exc:
                if index + 1 < len(self.apis):
                    continue  # that node is down: the next node's API serves the same cluster
                raise BrokerError(
                    f"cannot reach the RabbitMQ management API at {', '.join(self.apis)}: "
                    f"{exc}; enable it with `rabbitmq-plugins enable rabbitmq_management`, set "
                    "management_url (OUTPOST_AMQP_MANAGEMENT_URL), or set broker_auth to "
                    "'shared'"
                ) from exc
            if index:  # ask the node that answered first from now on
                self.apis.insert(0, self.apis.pop(index))
            break
        assert response is not None
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            raise BrokerError(
                f"RabbitMQ management API refused {method} {path.split('?')[0]} "
                f"(HTTP {response.status_code}: {response.text[:200]}); the service's broker "
                "user needs the 'administrator' tag to manage endpoint users"
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    def close(self) -> None:
        self._session.close()
