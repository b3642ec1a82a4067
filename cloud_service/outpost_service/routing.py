"""Route declarations: each view says which token scope it needs, which body it takes and
what it answers, beside Flask's own route decorator::

    @bp.post("")
    @declare(scope="submit", body=SubmitTasks, answers=TaskIds, errors=(403, 503))
    def submit_tasks(body: SubmitTasks) -> dict[str, Any]: ...

Authentication (:mod:`.auth`) reads the scope from the view, not from its path; the body is
parsed and checked before the view runs and handed to it as ``body``; every part of a path is
an id, a UUID, handed to the view in its canonical form (422 otherwise); the OpenAPI document
(:mod:`.openapi`) is generated from the declarations.  :func:`check_declarations` makes app
creation fail for a route that declares nothing, so no route is served without its scope.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from flask import Flask
from pydantic import BaseModel

from outpost_service.errors import RouteError
from outpost_service.state import service_state
from outpost_service.validation import json_body, parse, uuid_text

#: ``read``: every GET, and collecting results; ``submit``: tasks and their retries and
#: cancels; ``manage``: endpoints; ``public``: no token at all; ``ui``: a dashboard page
#: (:mod:`outpost_service.ui`), signed in by its own session cookie and left out of OpenAPI.
Scope = Literal["read", "submit", "manage", "public", "ui"]

View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True)
class Declaration:
    """What one route needs and answers."""

    scope: Scope
    body: type[BaseModel] | None
    answers: type[BaseModel] | None
    #: HTTP statuses this route answers besides 200 and the errors every protected route may
    #: answer (e.g. 409, 503).
    errors: tuple[int, ...]
    #: The media type of the 200 answer: JSON, or text for the rare route that is not
    #: (``/metrics``: Prometheus' text format).
    media_type: str = "application/json"


def declare(
    *,
    scope: Scope,
    body: type[BaseModel] | None = None,
    answers: type[BaseModel] | None = None,
    errors: tuple[int, ...] = (),
    media_type: str = "application/json",
) -> Callable[[View], View]:
    """Declare a view's scope, body model and answer model (put it below ``@bp.get(...)``)."""
    declaration = Declaration(scope, body, answers, errors, media_type)

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def declared(**path: str) -> Any:
            ids = {name: uuid_text(value, name) for name, value in path.items()}
            if body is None:
                return view(**ids)
            checked = parse(body, json_body(), {"config": service_state().config})
            return view(body=checked, **ids)

        declared.declaration = declaration  # type: ignore[attr-defined]
        return declared  # type: ignore[return-value]

    return decorate


def page(view: View) -> View:
    """Declare a dashboard page (scope ``ui``): the view checks its own session and reads its
    own form; nothing is parsed for it and it is not in the OpenAPI document."""
    view.declaration = Declaration("ui", None, None, ())  # type: ignore[attr-defined]
    return view


def declaration_of(view: Callable[..., Any]) -> Declaration | None:
    """The declaration of ``view`` (None for an undeclared one)."""
    found: Declaration | None = getattr(view, "declaration", None)
    return found


def check_declarations(app: Flask) -> None:
    """Raise :class:`RouteError` naming every route of ``app`` that declares nothing."""
    undeclared = [
        f"{','.join(sorted((rule.methods or set()) - {'HEAD', 'OPTIONS'}))} {rule.rule}"
        for rule in app.url_map.iter_rules()
        if declaration_of(app.view_functions[rule.endpoint]) is None
    ]
    if undeclared:
        raise RouteError(
            f"route(s) {'; '.join(undeclared)} declare no scope: decorate each view with "
            "@declare(scope=...) from outpost_service.routing ('public' for a route that "
            "needs no token)"
        )
