"""Names and identifiers with a trailing newline are refused everywhere they are validated.

``re.match(r"^[a-z]+$", "name\\n")`` matches: ``$`` also matches before a final newline.  Every
validation of a name or id therefore uses ``fullmatch``; these tests send ``"...\\n"`` to each:
the service API (endpoint names, policy user names and function ids, task function ids), the
service CLI (``create-user``), the endpoint's names and config (``walltime``,
``allowed_functions``, ``cpu_affinity``) and the SDK's pinned-key fingerprints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from outpost_endpoint.config import parse_config
from outpost_endpoint.errors import ConfigError
from outpost_endpoint.paths import check_name
from outpost_service.cli import main as service_cli

from .conftest import caller

GOOD_ID = "a" * 64


def test_service_api_refuses_names_and_ids_ending_in_a_newline(make_app: Any) -> None:
    app = make_app()
    alice, _ = caller(app, "alice"), caller(app, "bob")
    refused = alice.post("/v1/endpoints", {"name": "ep\n"})
    assert refused.status_code == 422, refused.get_json()
    assert "'ep\\n'" in refused.get_json()["error"]["message"]
    endpoint_id = alice.register_endpoint("ep")
    function_id = alice.register_function()
    for body in (
        {"allowed_users": ["bob\n"]},
        {"allowed_users": ["bob"], "allowed_functions": [function_id + "\n"]},
    ):
        answer = alice.client.put(
            f"/v1/endpoints/{endpoint_id}/policy", json=body, headers=alice.headers
        )
        assert answer.status_code == 422, answer.get_json()
    tasks = {"tasks": [{"function_id": function_id + "\n", "endpoint_id": endpoint_id}]}
    answer = alice.post("/v1/tasks", tasks | {"tasks": [tasks["tasks"][0] | {"args": ""}]})
    assert answer.status_code == 422, answer.get_json()
    assert "function_id" in answer.get_json()["error"]["message"]
    policy = alice.get(f"/v1/endpoints/{endpoint_id}/policy").get_json()
    assert policy["allowed_users"] == []  # nothing was changed by the refused requests


def test_service_cli_refuses_a_user_name_ending_in_a_newline(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path}/outpost.db"
    run = CliRunner().invoke(service_cli, ["create-user", "bob\n", "--database-url", database])
    assert run.exit_code != 0
    assert "NAME" in run.output and "letters, digits" in run.output


def test_endpoint_names_and_config_refuse_a_trailing_newline() -> None:
    with pytest.raises(ConfigError, match="endpoint name 'ep\\\\n' is not allowed"):
        check_name("ep\n")
    assert check_name("ep") == "ep"
    with pytest.raises(ConfigError, match="allowed_functions"):
        parse_config({"allowed_functions": [GOOD_ID + "\n"]})
    with pytest.raises(ConfigError, match="walltime"):
        parse_config({"engine": {"provider": {"walltime": "01:00:00\n"}}})
    with pytest.raises(ConfigError, match="cpu_affinity"):
        parse_config({"engine": {"cpu_affinity": "list:0-3\n"}})


def test_pinned_key_fingerprints_must_match_whole() -> None:
    from outpost.endpoint_keys import _FINGERPRINT

    assert _FINGERPRINT.fullmatch("sha256:" + GOOD_ID)
    assert not _FINGERPRINT.fullmatch("sha256:" + GOOD_ID + "\n")
