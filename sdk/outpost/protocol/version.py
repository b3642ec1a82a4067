"""Protocol and runtime versions, and the checks that compare them."""

from __future__ import annotations

import platform
from functools import cache

from outpost.errors import ProtocolVersionError

#: Bumped on every incompatible change to an envelope.  Readers accept exactly this version and
#: say which side to upgrade otherwise.
PROTOCOL_VERSION = 1


@cache
def runtime_versions() -> dict[str, str]:
    """The versions that decide whether a pickle written here can be read elsewhere."""
    import cloudpickle

    import outpost

    return {
        "python": platform.python_version(),
        "cloudpickle": cloudpickle.__version__,
        "outpost": outpost.__version__,
    }


def check_protocol_version(found: object, what: str) -> None:
    """Raise :class:`ProtocolVersionError` naming both versions if ``found`` is not ours."""
    if found == PROTOCOL_VERSION:
        return
    if isinstance(found, int) and found > PROTOCOL_VERSION:
        hint = "this side is older: upgrade outpost here (pip install -U outpost)"
    elif isinstance(found, int):
        hint = "the sender is older: upgrade outpost on the sending side"
    else:
        hint = "the message carries no valid protocol version; it was not written by outpost"
    raise ProtocolVersionError(
        f"{what} uses outpost protocol version {found!r}, this side reads version "
        f"{PROTOCOL_VERSION}; {hint}"
    )
