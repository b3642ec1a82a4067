"""The OpenAPI 3.1 document of the HTTP API (hand-written; a test checks it covers every route).

Keep it in step with docs/ARCHITECTURE.md: this is what SDK authors and tools read.
"""

from __future__ import annotations

from typing import Any

from outpost.protocol import PROTOCOL_VERSION, runtime_versions


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "403": {"$ref": "#/components/responses/Forbidden"},
    "404": {"$ref": "#/components/responses/NotFound"},
    "413": {"$ref": "#/components/responses/PayloadTooLarge"},
    "422": {"$ref": "#/components/responses/Unprocessable"},
    "429": {"$ref": "#/components/responses/TooManyRequests"},
}


def _op(
    summary: str,
    response: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    params: tuple[str, ...] = (),
    public: bool = False,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": {"200": _json(response)}}
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    if params:
        operation["parameters"] = [
            {
                "name": p,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "format": "uuid"},
            }
            for p in params
        ]
    if public:
        operation["security"] = []
    else:
        operation["responses"].update(_ERRORS)
    operation["responses"].update(extra or {})
    return operation


_UUID = {"type": "string", "format": "uuid"}
_B64 = {"type": "string", "contentEncoding": "base64"}
_FUNCTION_ID = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_TIME = {"type": ["number", "null"], "description": "seconds since the epoch"}
_503 = {"503": {"$ref": "#/components/responses/BrokerUnavailable"}}
_409 = {"409": {"$ref": "#/components/responses/Conflict"}}
_403 = {"403": {"$ref": "#/components/responses/Forbidden"}}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {"type": "object"},
                },
            }
        },
    },
    "Endpoint": {
        "type": "object",
        "properties": {
            "endpoint_id": _UUID,
            "name": {"type": "string"},
            "state": {"type": "string", "enum": ["online", "offline"]},
            "last_heartbeat": _TIME,
            "details": {"type": "object"},
            "metadata": {"type": "object"},
            "outstanding_tasks": {"type": "integer"},
            "created_at": _TIME,
            "owner": {"type": "string", "description": "the owner's user name"},
            "shared": {"type": "boolean", "description": "someone else's, shared with you"},
            "allowed_functions": {"type": ["array", "null"], "items": _FUNCTION_ID},
        },
    },
    "EndpointPolicy": {
        "type": "object",
        "properties": {
            "endpoint_id": _UUID,
            "allowed_users": {"type": "array", "items": {"type": "string"}},
            "allowed_functions": {"type": ["array", "null"], "items": _FUNCTION_ID},
        },
    },
    "Registration": {
        "type": "object",
        "properties": {
            "endpoint_id": _UUID,
            "name": {"type": "string"},
            "amqp": {
                "type": "object",
                "properties": {
                    "url": {"type": "string"},
                    "task_exchange": {"type": "string"},
                    "task_queue": {"type": "string"},
                    "result_exchange": {"type": "string"},
                    "result_routing_key": {"type": "string"},
                    "status_routing_key": {"type": "string"},
                    "heartbeat_interval": {"type": "number"},
                },
            },
        },
    },
    "TaskSubmission": {
        "type": "object",
        "required": ["function_id", "endpoint_id", "args"],
        "properties": {
            "function_id": _FUNCTION_ID,
            "endpoint_id": _UUID,
            "args": _B64,
            "task_group_id": _UUID,
            "resource_specification": {"type": "object"},
        },
    },
    "ResultEnvelope": {
        "type": "object",
        "description": f"outpost.protocol.ResultEnvelope, protocol version {PROTOCOL_VERSION}",
        "properties": {
            "v": {"type": "integer"},
            "type": {"const": "result"},
            "task_id": _UUID,
            "endpoint_id": _UUID,
            "state": {"type": "string", "enum": ["success", "failed", "cancelled", "lost"]},
            "value": {"type": ["string", "null"], "contentEncoding": "base64"},
            "error": {"type": ["object", "null"]},
            "timing": {"type": "object"},
            "node": {"type": "string"},
            "worker": {"type": "string"},
            "endpoint_owned": {
                "type": "boolean",
                "description": "Set by the service: does the caller own the task's endpoint? "
                "Pickles from endpoints not owned are loaded by the SDK only when trusted",
            },
            "endpoint_owner": {
                "type": "string",
                "description": "The endpoint owner's name (when not the caller)",
            },
            "withheld": {
                "type": "array",
                "items": {"type": "string", "enum": ["value", "error.payload"]},
                "description": "Parts set to null: pickles from an endpoint the caller does "
                "not own and did not list in trust_endpoints",
            },
        },
    },
    "Task": {
        "type": "object",
        "properties": {
            "task_id": _UUID,
            "state": {"type": "string"},
            "endpoint_id": _UUID,
            "function_id": _FUNCTION_ID,
            "task_group_id": {"type": ["string", "null"], "format": "uuid"},
            "created_at": _TIME,
            "completed_at": _TIME,
            "result": {"oneOf": [_ref("ResultEnvelope"), {"type": "null"}]},
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"state": {"type": "string"}, "at": {"type": "number"}},
                },
            },
        },
    },
}


def _error_response(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def openapi_document() -> dict[str, Any]:
    """The whole document; ``servers`` is left out so it is valid behind any address."""
    obj = {"type": "object"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Outpost cloud service",
            "version": runtime_versions()["outpost"],
            "description": "Submit Python functions and shell commands to HPC endpoints and "
            "collect their results. Payloads are base64 text of outpost.protocol.serialize "
            'output. Every error is {"error": {"code", "message", "details"}}.',
        },
        "security": [{"bearer": []}],
        "paths": {
            "/health": {
                "get": _op(
                    "Liveness, service version and protocol version",
                    {
                        "type": "object",
                        "properties": {
                            "status": {"const": "ok"},
                            "version": {"type": "string"},
                            "protocol": {"type": "integer"},
                        },
                    },
                    public=True,
                )
            },
            "/openapi.json": {"get": _op("This document", obj, public=True)},
            "/v1/endpoints": {
                "post": _op(
                    "Register an endpoint, or re-attach one (same name or known endpoint_id)",
                    _ref("Registration"),
                    body={
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {
                                "type": "string",
                                "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                            },
                            "endpoint_id": _UUID,
                            "metadata": {
                                **obj,
                                "description": "at most max_metadata_bytes (64 KiB) of compact "
                                "JSON; over it: 413",
                            },
                            "force": {
                                "type": "boolean",
                                "description": "register even while the endpoint heartbeats "
                                "(else 409); the running endpoint is cut off",
                            },
                        },
                    },
                    extra={**_409, **_503},
                ),
                "get": _op(
                    "List your endpoints",
                    {
                        "type": "object",
                        "properties": {"endpoints": {"type": "array", "items": _ref("Endpoint")}},
                    },
                ),
            },
            "/v1/endpoints/{endpoint_id}": {
                "get": _op("Show one endpoint", _ref("Endpoint"), params=("endpoint_id",)),
                "delete": _op(
                    "Delete an endpoint and its queue; its unfinished tasks end cancelled",
                    {"type": "object", "properties": {"deleted": _UUID}},
                    params=("endpoint_id",),
                    extra=_503,
                ),
            },
            "/v1/endpoints/{endpoint_id}/policy": {
                "get": _op(
                    "Who besides you may use your endpoint, and which functions may run on it",
                    _ref("EndpointPolicy"),
                    params=("endpoint_id",),
                ),
                "put": _op(
                    "Share your endpoint with users and/or restrict it to listed function ids "
                    "(null: any function); replaces the whole policy",
                    _ref("EndpointPolicy"),
                    body={
                        "type": "object",
                        "required": ["allowed_users"],
                        "additionalProperties": False,
                        "properties": {
                            "allowed_users": {
                                "type": "array",
                                "maxItems": 1000,
                                "items": {
                                    "type": "string",
                                    "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                                },
                            },
                            "allowed_functions": {
                                "type": ["array", "null"],
                                "maxItems": 1000,
                                "items": _FUNCTION_ID,
                            },
                        },
                    },
                    params=("endpoint_id",),
                ),
            },
            "/v1/functions": {
                "post": _op(
                    "Register a serialized function; its id is the sha256 of the payload",
                    {"type": "object", "properties": {"function_id": _FUNCTION_ID}},
                    body={
                        "type": "object",
                        "required": ["function"],
                        "properties": {"function": _B64, "name": {"type": "string"}},
                    },
                )
            },
            "/v1/tasks": {
                "post": _op(
                    "Submit up to 10,000 tasks; answered after the commit and broker confirms",
                    {
                        "type": "object",
                        "properties": {"task_ids": {"type": "array", "items": _UUID}},
                    },
                    body={
                        "type": "object",
                        "required": ["tasks"],
                        "properties": {
                            "tasks": {"type": "array", "items": _ref("TaskSubmission")},
                            # A retry with the same request_id returns the same task ids.
                            "request_id": {
                                "type": "string",
                                "pattern": "^[A-Za-z0-9_.:-]{1,64}$",
                            },
                            # How many tasks the submitting executor accepted for its group
                            # so far (the group summary's `submitted`).
                            "group_submitted": {
                                "type": "object",
                                "required": ["task_group_id", "client_id", "count"],
                                "properties": {
                                    "task_group_id": _UUID,
                                    "client_id": {
                                        "type": "string",
                                        "pattern": "^[A-Za-z0-9_.:-]{1,64}$",
                                    },
                                    "count": {"type": "integer", "minimum": 0},
                                },
                            },
                        },
                    },
                    extra={**_403, **_503},
                )
            },
            "/v1/tasks/{task_id}": {
                "get": _op(
                    "Show one task with its result and events", _ref("Task"), params=("task_id",)
                )
            },
            "/v1/tasks/{task_id}/cancel": {
                "post": _op(
                    "Cancel an unfinished task (a finished one keeps its state)",
                    {
                        "type": "object",
                        "properties": {"task_id": _UUID, "state": {"type": "string"}},
                    },
                    params=("task_id",),
                )
            },
            "/v1/results": {
                "post": _op(
                    "Long-poll for results: blocks up to `wait` seconds until one is finished "
                    "(a poll that would wait while its user already has `longpoll_per_user` "
                    "waiting, or the service its `longpoll_slots`, gets 429 with Retry-After; "
                    "a token revoked while the poll waited gets 401)",
                    {
                        "type": "object",
                        "properties": {
                            "results": {"type": "array", "items": _ref("ResultEnvelope")},
                            "pending": {"type": "array", "items": _UUID},
                        },
                    },
                    body={
                        "type": "object",
                        "required": ["task_ids"],
                        "properties": {
                            "task_ids": {"type": "array", "items": _UUID, "maxItems": 10000},
                            "wait": {"type": "number", "minimum": 0, "maximum": 60},
                            "trust_endpoints": {
                                "type": "array",
                                "items": _UUID,
                                "maxItems": 1000,
                                "description": "Endpoints not yours whose pickled values and "
                                "exceptions you accept (withheld otherwise)",
                            },
                        },
                    },
                )
            },
            "/v1/task_groups/{task_group_id}/tasks": {
                "get": _op(
                    "Every task of a group (to reload futures from another process)",
                    {
                        "type": "object",
                        "properties": {
                            "task_group_id": _UUID,
                            "submitted": {"type": ["integer", "null"]},
                            "tasks": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "task_id": _UUID,
                                        "state": {"type": "string"},
                                        "function_id": _FUNCTION_ID,
                                        "endpoint_id": _UUID,
                                        "retried_by": {"type": ["string", "null"]},
                                    },
                                },
                            },
                        },
                    },
                    params=("task_group_id",),
                )
            },
            "/v1/task_groups/{task_group_id}/retry": {
                "post": _op(
                    "Resubmit the group's latest attempts in `states` as new tasks (successes "
                    "are never rerun; a retried task is not copied twice)",
                    {
                        "type": "object",
                        "properties": {
                            "task_group_id": _UUID,
                            "retried": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {"old": _UUID, "new": _UUID},
                                },
                            },
                        },
                    },
                    body={
                        "type": "object",
                        "properties": {
                            "states": {
                                "type": "array",
                                "items": {"enum": ["failed", "lost", "cancelled"]},
                                "default": ["failed", "lost"],
                            }
                        },
                    },
                    params=("task_group_id",),
                    extra=_403,
                )
            },
            "/v1/task_groups/{task_group_id}/summary": {
                "get": _op(
                    "Outcome of a group: counts per state, failures grouped by error",
                    {
                        "type": "object",
                        "properties": {
                            "task_group_id": _UUID,
                            "tasks": {"type": "integer"},
                            "retried": {"type": "integer"},
                            # tasks the SDK executors accepted (null: none declared) and the
                            # group's original tasks stored; they differ when some were lost
                            "submitted": {"type": ["integer", "null"]},
                            "stored": {"type": "integer"},
                            "states": {"type": "object"},
                            "latest_states": {"type": "object"},
                            "errors": {"type": "array", "items": {"type": "object"}},
                            "error_groups": {"type": "integer"},
                        },
                    },
                    params=("task_group_id",),
                )
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token from `outpost-service create-user NAME`",
                }
            },
            "schemas": _SCHEMAS,
            "responses": {
                "BadRequest": _error_response("Malformed JSON"),
                "Unauthorized": _error_response("Missing, unknown, revoked or expired token"),
                "NotFound": _error_response("Unknown object, or someone else's"),
                "Forbidden": _error_response(
                    "Refused: `insufficient_scope` (the token lacks the scope), or "
                    "`function_not_allowed` (the endpoint's allow-list)"
                ),
                "Conflict": _error_response("Clashes with an existing object"),
                "PayloadTooLarge": _error_response("Body or payload over its limit"),
                "Unprocessable": _error_response("Missing or wrongly typed field"),
                "TooManyRequests": _error_response(
                    "The token is over its request rate (`rate_limited`), or a long-poll "
                    "found no waiting slot (`too_many_long_polls`, `long_polls_busy`); retry "
                    "after `Retry-After` seconds"
                ),
                "BrokerUnavailable": _error_response("RabbitMQ did not confirm; retry later"),
            },
        },
    }
