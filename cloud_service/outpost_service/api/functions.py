"""``POST /v1/functions``: register a serialized function under its content hash."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Blueprint

from outpost.protocol import function_id_for
from outpost.protocol.api import FunctionRegistered
from outpost_service.api.bodies import RegisterFunction
from outpost_service.auth import current_user
from outpost_service.routing import declare
from outpost_service.state import service_state
from outpost_service.store import functions as function_store

bp = Blueprint("functions", __name__, url_prefix="/v1/functions")


@bp.post("")
@declare(scope="submit", body=RegisterFunction, answers=FunctionRegistered)
def register_function(body: RegisterFunction) -> dict[str, Any]:
    """Register a serialized function; its id is the sha256 of the payload.

    The same payload always gets the same id and is stored once (dedup).
    """
    state = service_state()
    payload = body.function
    # Any label is accepted (``<lambda>``, ``module.fn``): it is for display only.
    name = None if body.name is None else body.name[:64]
    function_id = function_id_for(payload)
    if state.functions.get(function_id) is None:
        with state.database.read() as conn:
            known = function_store.exists(conn, function_id)
        if not known:
            try:
                with state.database.write() as conn:
                    function_store.insert(conn, function_id, payload, name, current_user().user_id)
            except sa.exc.IntegrityError:
                pass  # registered concurrently by another request: same content, same id
        state.functions.put(function_id, payload)
    return {"function_id": function_id}
