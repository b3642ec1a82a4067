"""HTTP API blueprints, one per resource."""

from outpost_service.api import (
    endpoints,
    functions,
    health,
    metrics,
    openapi,
    results,
    task_groups,
    tasks,
)

BLUEPRINTS = [
    health.bp,
    metrics.bp,
    openapi.bp,
    endpoints.bp,
    functions.bp,
    tasks.bp,
    results.bp,
    task_groups.bp,
]

__all__ = ["BLUEPRINTS"]
