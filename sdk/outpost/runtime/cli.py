"""What the three command-line tools (``outpost``, ``outpost-endpoint``, ``outpost-service``)
share: an Outpost error is shown as its message, not as a traceback.

Every :class:`~outpost.errors.OutpostError` already says what was wrong, with which value, and
how to fix it; a traceback would only bury that sentence.
"""

from __future__ import annotations

from typing import Any

import click

from outpost.errors import OutpostError


class OutpostGroup(click.Group):
    """A click group that turns every Outpost error into ``Error: <message>``, exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OutpostError as exc:
            raise click.ClickException(str(exc)) from exc
