"""``POST /v1/functions``: register a serialized function under its content hash."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Blueprint

from outpost.protocol import function_id_for
from outpost_service.auth import current_user, protect
from outpost_service.state import service_state
from outpost_service.store import functions as function_store
from outpost_service.validation import get_field, json_body, payload_bytes

bp = protect(Blueprint("functions", __name__, url_prefix="/v1/functions"))


@bp.post("")
def register_function() -> dict[str, Any]:
    """The same payload always gets the same id and is stored once (dedup)."""
    state = service_state()
    body = json_body()
    payload = payload_bytes(
        get_field(body, "function", str), "function", state.config.payload_limit
    )
    # Any label is accepted (``<lambda>``, ``module.fn``): it is for display only.
    name = get_field(body, "name", str, required=False)
    name = None if name is None else name[:64]
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
