"""The dashboard: server-rendered pages under ``/ui/`` over the same store the API reads.

A user signs in with an API token (``/ui/login``); the pages show only their own endpoints
(and those shared with them), task groups and tasks, and refresh their live part by fetching a
fragment every 1.5 s (``static/live.js``; no build step).  Retry and cancel run the API's own
code.  Routes are declared with :func:`outpost_service.routing.page` (scope ``ui``), so they
are checked like every route and left out of the OpenAPI document.
"""

from outpost_service.ui.views import bp

__all__ = ["bp"]
