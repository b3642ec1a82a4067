"""Where an endpoint's files live: ``OUTPOST_HOME/endpoints/NAME/``.

Every other module asks this one for a path, so the layout described in ARCHITECTURE.md
("Files on the endpoint host") is written down exactly once.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from outpost.protocol.conventions import outpost_home
from outpost.runtime.files import write_json_private
from outpost_endpoint.errors import ConfigError, EndpointNotFound

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def endpoints_dir() -> Path:
    return outpost_home() / "endpoints"


def check_name(name: str) -> str:
    """Endpoint names become directory names: keep them to a safe alphabet."""
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"endpoint name {name!r} is not allowed; use letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit, at most 64 characters)"
        )
    return name


class _File:
    """One file of an endpoint's folder, read as an attribute of :class:`EndpointPaths`."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, paths: EndpointPaths, owner: type[EndpointPaths]) -> Path:
        return paths.root / self.name


@dataclass(frozen=True)
class EndpointPaths:
    """The files of one endpoint."""

    name: str
    root: Path

    @classmethod
    def for_name(cls, name: str) -> EndpointPaths:
        return cls(check_name(name), endpoints_dir() / name)

    config = _File("config.yaml")
    #: the id the service gave us, kept across restarts
    info = _File("endpoint.json")
    pidfile = _File("endpoint.pid")
    log = _File("endpoint.log")
    #: optional per-endpoint ``{"url", "token"}`` (0600); its token goes to that URL only
    credentials = _File("credentials.json")
    #: the endpoint's X25519 private key (0600) for end-to-end encrypted tasks
    sealing_key = _File("sealing_key")
    #: ``{"reason", "at"}``: why the last run stopped by itself, shown by ``status`` and
    #: ``list`` until the next successful start removes it
    failure = _File("failed.json")

    def record_failure(self, reason: str) -> None:
        write_json_private(self.failure, {"reason": reason, "at": time.time()})

    def read_failure(self) -> str | None:
        try:
            reason = read_json(self.failure).get("reason")
        except ConfigError:
            return "unreadable failed.json"
        return str(reason) if reason else None

    def clear_failure(self) -> None:
        self.failure.unlink(missing_ok=True)

    def exists(self) -> bool:
        return self.config.is_file()

    def require(self) -> EndpointPaths:
        """Raise :class:`EndpointNotFound` unless ``configure`` created this endpoint."""
        if not self.exists():
            raise EndpointNotFound(
                f"no endpoint named {self.name!r} (looked for {self.config}); create it with "
                f"`outpost-endpoint configure {self.name}` or check OUTPOST_HOME"
            )
        return self

    def read_info(self) -> dict[str, Any]:
        """The contents of ``endpoint.json``, or ``{}`` if the endpoint never registered."""
        return read_json(self.info)

    def write_info(self, info: dict[str, Any]) -> None:
        write_json_private(self.info, info)


def list_endpoints() -> list[EndpointPaths]:
    """Every configured endpoint, sorted by name."""
    root = endpoints_dir()
    if not root.is_dir():
        return []
    found = [
        EndpointPaths(child.name, child)
        for child in sorted(root.iterdir())
        if EndpointPaths(child.name, child).exists()
    ]
    return found


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ``{}`` if missing; a clear error if it is not JSON."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); fix or delete it") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data
