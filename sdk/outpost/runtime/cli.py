"""What the three command-line tools (``outpost``, ``outpost-endpoint``, ``outpost-service``)
share: an Outpost error is shown as its message, not as a traceback, and secrets given as
options are handled one way.

Every :class:`~outpost.errors.OutpostError` already says what was wrong, with which value, and
how to fix it; a traceback would only bury that sentence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from outpost.errors import OutpostError
from outpost.protocol.conventions import exposed_secret, read_secret


class OutpostGroup(click.Group):
    """A click group that turns every Outpost error into ``Error: <message>``, exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OutpostError as exc:
            raise click.ClickException(str(exc)) from exc


def secret_callback(
    env: str | None, *, url: bool
) -> Callable[[click.Context, click.Parameter, str | None], str | None]:
    """The click callback of a secret-bearing option or argument: ``@PATH`` reads the value
    from a file, and a literal secret typed on the command line (visible in ``ps``) gets a
    warning on stderr that names ``env``, the variable to use instead.  With ``url`` the value
    is a URL, secret only when it holds a password."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        option = param.opts[0] if param.param_type_name == "option" else param.human_readable_name
        try:
            secret = read_secret(value, option)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
        if ctx.get_parameter_source(param.name or "") is ParameterSource.COMMANDLINE:
            warning = exposed_secret(value, option, env, url=url)
            if warning:
                click.echo(warning, err=True)
        return secret

    return callback
