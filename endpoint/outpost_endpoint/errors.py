"""The endpoint's exception tree, rooted in :class:`outpost.errors.OutpostError`.

Callers (the CLI above all) catch :class:`EndpointError` and print its message, so every message
says what was wrong, with which value, and how to fix it.
"""

from __future__ import annotations

from outpost.errors import ConfigurationError, OutpostError


class EndpointError(OutpostError):
    """Root of every error the endpoint raises."""


class ConfigError(EndpointError, ConfigurationError):
    """``config.yaml`` (or the environment) is missing, unreadable or invalid."""


class RegistrationError(EndpointError):
    """The service could not be reached or refused to register the endpoint.

    ``status`` is the HTTP status of the refusal (0 when the service was not reached).
    """

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class EndpointConnected(RegistrationError):
    """The service refused to register: another instance of this endpoint heartbeats.

    ``details`` is the service's ``error.details`` (``hostname``, ``pid``, ``last_heartbeat``).
    """

    def __init__(self, message: str, *, details: dict[str, object]) -> None:
        super().__init__(message, status=409)
        self.details = details


class ServiceRequestError(RegistrationError):
    """A request to the service (other than registration) failed."""


class BrokerError(EndpointError):
    """RabbitMQ could not be reached at start-up or refused our credentials."""


class CredentialsRefused(BrokerError):
    """RabbitMQ refused this endpoint's credentials while it ran: it was registered again
    elsewhere (its password rotated) or deleted.  Retrying cannot help, so the daemon stops."""


class DaemonError(EndpointError):
    """The endpoint daemon could not be started, stopped or inspected."""


class AlreadyRunning(DaemonError):
    """``start`` was asked for an endpoint whose daemon is alive."""


class NotRunning(DaemonError):
    """``stop`` (or similar) was asked for an endpoint with no live daemon."""


class EndpointNotFound(EndpointError):
    """No endpoint of that name is configured under ``OUTPOST_HOME``."""


class EngineError(EndpointError):
    """The engine was used wrongly (submit after shutdown, unknown engine type)."""


class ProviderError(EndpointError):
    """A batch scheduler (or the local provider) refused or failed a request; the message
    names the command and carries its output.  ``detail`` is the scheduler's own words (what
    ``status`` shows as "blocks failing: ..."), the whole message if there are none."""

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail or message


class JournalError(EndpointError):
    """The task journal (``journal.db`` in the endpoint directory) cannot be opened or written."""


class SubmissionUncertain(ProviderError):
    """``qsub``/``sbatch`` timed out or printed no job id: a job may exist all the same."""
