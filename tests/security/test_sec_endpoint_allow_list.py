"""The endpoint's own ``allowed_functions`` (config.yaml), enforced by the real daemon.

Defence in depth beside the service's allow-list (``/v1/endpoints/<id>/policy``): even a
task the service accepted and signed runs only if its function id is in the endpoint's list.
A real ``outpost-service serve`` (no service-side list) and a real ``outpost-endpoint``
daemon: the allowed function runs, another fails with reason ``function_not_allowed`` and a
message naming it (a stored failed result, not a drop), and never runs; the endpoint publishes
its list in its registration metadata.
"""

# The durability fixtures are imported below, so test arguments of the same names "redefine" them.
# ruff: noqa: F811

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from outpost import Client, Executor
from outpost.errors import RemoteExecutionError
from outpost_endpoint.config import parse_config
from outpost_endpoint.errors import ConfigError

from ..durability.campaign import work
from ..durability.conftest import service, service_database, service_home  # noqa: F401
from ..e2e.stack import RunningService, make_endpoint


def note_run(runs: str) -> str:
    """Leaves a file per run (so a test can tell that a refused task never ran)."""
    import os as _os
    import uuid as _uuid

    with open(_os.path.join(runs, _uuid.uuid4().hex), "w"):
        pass
    return "ran"


def test_a_function_not_in_allowed_functions_fails_without_running(
    service: RunningService, tmp_path: Path
) -> None:
    client = Client(url=service.url, token=service.token)
    allowed = client.register_function(work)
    refused = client.register_function(note_run)
    name = f"allow{uuid.uuid4().hex[:6]}"
    home = tmp_path / "endpoint"
    endpoint = make_endpoint(
        service,
        home,
        name,
        edit=lambda config: config.update(allowed_functions=[allowed]),
    )
    runs = tmp_path / "runs"
    runs.mkdir()
    try:
        shown = client.get_endpoint(endpoint.endpoint_id)
        assert shown["metadata"]["allowed_functions"] == [allowed]
        with Executor(endpoint.endpoint_id, client=client) as ex:
            ok = ex.submit(work, 4, str(runs))
            no = ex.submit(note_run, str(runs))
            assert ok.result(timeout=120) == 16
            error = no.exception(timeout=120)
        assert isinstance(error, RemoteExecutionError)
        assert refused in str(error) and "allowed_functions" in str(error)
        task = client.get_task(no.task_id)
        assert task["state"] == "failed"
        assert task["result"]["error"]["reason"] == "function_not_allowed"
        assert task["result"]["error"]["type"] == "outpost.errors.FunctionNotAllowed"
        assert len(list(runs.iterdir())) == 1  # work's file only: note_run never ran
        log = (home / "endpoints" / name / "endpoint.log").read_text()
        assert re.search(rf"function {refused} is not in allowed_functions", log)
    finally:
        endpoint.run("stop", name, check=False)
        client.close()


def test_allowed_functions_is_validated() -> None:
    good = "a" * 64
    assert parse_config({"allowed_functions": [good, good]}).allowed_functions == [good]
    assert parse_config({}).allowed_functions is None
    for bad, says in [
        ([], "is empty, which would refuse every task"),
        (["not-an-id"], "not function ids: 'not-an-id'"),
        (good, "is not a list"),
        ([good.upper()], "64 lowercase hex digits"),
    ]:
        with pytest.raises(ConfigError, match="allowed_functions") as caught:
            parse_config({"allowed_functions": bad})
        assert says in str(caught.value)
