"""Everything Outpost keeps on disk is private to its owner: folders 0700, files 0600.

``OUTPOST_HOME`` holds API tokens, the service's task-signing private key and task data
(its SQLite database), endpoint journals full of task arguments, logs, CurveZMQ and sealing
keys.  On a shared login node a 0644 file is readable by every other user.  So the service and
the endpoint run with umask 077 (:data:`PRIVATE_UMASK`), create their files with explicit
private modes, and at start tighten what an older version (or a copy) left readable:
:func:`tighten` removes the group and other bits and says what it changed, so the caller can
log it once.  Owner bits are kept: an executable script stays executable (0700).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

#: The umask of the service and endpoint processes: nothing for group or others.
PRIVATE_UMASK = 0o077
_LOOSE = stat.S_IRWXG | stat.S_IRWXO


def tighten(paths: Iterable[Path | str], *, recursive: bool = False) -> list[Path]:
    """Remove group/other permission bits from ``paths`` (and, with ``recursive``, from
    everything below folders among them); return the paths changed.

    Symbolic links are neither followed nor changed (a link's own mode means nothing on
    Linux, and following one could change a file outside the home).  Paths that vanish or
    cannot be changed (another owner) are skipped: tightening must never stop a start."""
    changed: list[Path] = []
    for path in paths:
        _tighten_one(Path(path), changed)
        if recursive and Path(path).is_dir() and not Path(path).is_symlink():
            for root, dirs, files in os.walk(path):
                for name in dirs + files:
                    _tighten_one(Path(root) / name, changed)
    return changed


def _tighten_one(path: Path, changed: list[Path]) -> None:
    try:
        info = path.lstat()
    except OSError:
        return
    if stat.S_ISLNK(info.st_mode) or not info.st_mode & _LOOSE:
        return
    if info.st_uid != os.getuid():
        return  # not ours to change (e.g. a shared parent folder)
    try:
        os.chmod(path, stat.S_IMODE(info.st_mode) & ~_LOOSE)
    except OSError:
        return
    changed.append(path)


def make_private_dir(path: Path | str) -> Path:
    """Create ``path`` and its missing parents as 0700 folders (an existing folder is left
    as it is: it may be the operator's, e.g. ``/var/lib``; call :func:`tighten` for ours)."""
    path = Path(path)
    missing = []
    for parent in [path, *path.parents]:
        if parent.exists():
            break
        missing.append(parent)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for created in missing:  # mkdir's parents are made with the umask's mode, not ``mode``
        os.chmod(created, 0o700)
    return path


def describe(changed: list[Path], root: Path | str) -> str:
    """One log line for what :func:`tighten` changed under ``root``."""
    shown = ", ".join(str(p) for p in changed[:5])
    more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
    return (
        f"removed group/other access from {len(changed)} path(s) under {root} "
        f"(Outpost keeps its files private: folders 0700, files 0600): {shown}{more}"
    )
