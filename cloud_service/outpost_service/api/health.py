"""``GET /health`` (liveness) and ``GET /ready`` (readiness) for load balancers and scripts;
neither needs a token.

``/health`` touches nothing outside the process: it answers while the process can serve HTTP at
all, so a balancer or supervisor that restarts on failed liveness never restarts a service
whose database is merely restarting.  ``/ready`` says whether this process can do its work now:
its database and RabbitMQ both answer (:mod:`outpost_service.readiness`: at most 2 s, never a
hang); 503 ``not_ready`` says which does not and why, so a balancer takes it out of rotation.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint, current_app

from outpost.protocol import PROTOCOL_VERSION, runtime_versions
from outpost.protocol.api import Health, Readiness
from outpost_service.errors import NotReady
from outpost_service.readiness import Probe, outcomes, probes
from outpost_service.routing import declare
from outpost_service.state import service_state

bp = Blueprint("health", __name__)

#: ``app.extensions`` key of the app's readiness probes.
_PROBES = "outpost_ready"


@bp.get("/health")
@declare(scope="public", answers=Health)
def health() -> dict[str, Any]:
    """Liveness, service version and protocol version."""
    return {
        "status": "ok",
        "version": runtime_versions()["outpost"],
        "protocol": PROTOCOL_VERSION,
    }


@bp.get("/ready")
@declare(scope="public", answers=Readiness, errors=(503,))
def ready() -> dict[str, Any]:
    """Readiness: the database and RabbitMQ both answered (each check at most 2 s).

    503 ``not_ready`` names the part that did not answer and why, in ``details``."""
    found: tuple[Probe, ...] | None = current_app.extensions.get(_PROBES)
    if found is None:
        found = current_app.extensions[_PROBES] = probes(service_state())
    checks = {name: asdict(outcome) for name, outcome in outcomes(list(found)).items()}
    failing = [f"{name}: {check['detail']}" for name, check in checks.items() if not check["ok"]]
    if failing:
        raise NotReady(f"not ready: {'; '.join(failing)}", details=checks)
    return {"status": "ready", "checks": checks}
