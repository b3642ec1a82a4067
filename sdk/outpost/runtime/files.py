"""Private atomic file writes: the one way Outpost replaces a file it owns.

Credentials, pinned keys, ``endpoint.json``, the pid file, block records, unsent tasks: each is
read by another process (or the next run) at any moment, and several hold secrets.  So every
write here

* goes to a temporary file in the same folder (``os.replace`` is atomic only within one file
  system), with a name of its own, so concurrent writers never write into each other's file;
* creates that file with its final mode (default 0600): it is never readable by others, not
  even for the instant between create and ``chmod``;
* is flushed and fsynced before the rename when ``durable`` (the default), and the folder is
  fsynced after it, so a crash leaves the old file or the new one, never an empty or half one;
* removes the temporary file if anything fails, leaving the old file as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from outpost.protocol.private_files import make_private_dir


def write_private(
    path: str | os.PathLike[str], data: bytes | str, *, mode: int = 0o600, durable: bool = True
) -> Path:
    """Replace ``path`` with ``data`` atomically, as a file of ``mode``; returns the path.

    ``durable=False`` skips the fsyncs, for files that only describe the present (a status
    snapshot rewritten every few seconds) and need atomicity but not crash survival."""
    target = Path(path)
    make_private_dir(target.parent)
    content = data.encode() if isinstance(data, str) else data
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # exactly ``mode``, whatever the umask took away
            handle.write(content)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_folder(target.parent)
    return target


def write_json_private(
    path: str | os.PathLike[str],
    data: Any,
    *,
    mode: int = 0o600,
    indent: int | None = 2,
    durable: bool = True,
) -> Path:
    """:func:`write_private` of ``data`` as JSON (ending in a newline)."""
    return write_private(path, json.dumps(data, indent=indent) + "\n", mode=mode, durable=durable)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; a file system that cannot fsync a folder is let be."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
