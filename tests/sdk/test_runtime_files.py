"""``outpost.runtime.files``: the one private atomic write (modes, atomicity, concurrency)."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from outpost.runtime import files
from outpost.runtime.files import write_json_private, write_private


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_is_0600_and_its_new_folders_0700(tmp_path: Path) -> None:
    path = write_private(tmp_path / "a" / "b" / "secret", "token")

    assert path.read_text() == "token"
    assert mode_of(path) == 0o600
    assert mode_of(tmp_path / "a") == mode_of(tmp_path / "a" / "b") == 0o700


def test_the_mode_is_exact_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        loose = write_private(tmp_path / "loose", b"x", mode=0o640)
        private = write_private(tmp_path / "private", b"x")
    finally:
        os.umask(old)
    assert mode_of(loose) == 0o640
    assert mode_of(private) == 0o600


def test_the_temporary_file_is_never_readable_by_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is created with its final mode: no instant between create and chmod."""
    created: list[int] = []
    real_open = os.open

    def spying_open(path: object, flags: int, mode: int = 0o777, **kwargs: object) -> int:
        if flags & os.O_CREAT:
            created.append(mode)
        return real_open(path, flags, mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(files.os, "open", spying_open)
    write_private(tmp_path / "secret", "token")
    assert created == [0o600]


def test_replacing_tightens_a_loose_old_file(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    path.write_text("old")
    path.chmod(0o644)

    write_private(path, "new")

    assert path.read_text() == "new"
    assert mode_of(path) == 0o600


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_private(tmp_path / "endpoint.json", "old")

    def crash(*args: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        write_private(path, "new")

    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["endpoint.json"]


def test_a_write_interrupted_mid_file_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_private(tmp_path / "blocks.json", "old")

    def crash(fd: int) -> None:
        raise KeyboardInterrupt  # as if the process were stopped between write and rename

    monkeypatch.setattr(files.os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        write_private(path, "new" * 10_000)

    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["blocks.json"]


def test_concurrent_writers_never_corrupt_the_file(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    payloads = {n: {"writer": n, "body": "x" * (1000 * n)} for n in range(1, 9)}
    errors: list[BaseException] = []

    def write_many(n: int) -> None:
        try:
            for _ in range(30):
                write_json_private(path, payloads[n], durable=False)
                assert json.loads(path.read_text()) in payloads.values()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=write_many, args=(n,)) for n in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert json.loads(path.read_text()) in payloads.values()
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_json_ends_in_a_newline_and_keeps_the_indent(tmp_path: Path) -> None:
    path = write_json_private(tmp_path / "a.json", {"a": 1}, indent=None)
    assert path.read_text() == '{"a": 1}\n'
    assert write_json_private(path, {"a": 1}).read_text() == '{\n  "a": 1\n}\n'
