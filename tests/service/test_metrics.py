"""``/metrics`` (Prometheus text, behind the operator's metrics_token), ``/ready`` and
``/health``, on a real database and the real broker; multiprocess mode in real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from outpost_service.metrics import collectors

from .conftest import Caller, app_state, new_token
from .test_broker_down import NO_BROKER
from .test_validation import assert_error

TOKEN = "metrics-secret-for-tests"
SCRAPER = {"Authorization": f"Bearer {TOKEN}"}


def samples(app: Flask) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one scrape, by name and sorted labels."""
    answer = app.test_client().get("/metrics", headers=SCRAPER)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.content_type.startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.get_data(as_text=True))
        for sample in family.samples
    }


def wait_for(condition: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)  # polling a condition, with a deadline
    raise AssertionError(f"timed out waiting for {what}")


def test_metrics_are_off_without_a_metrics_token_and_refuse_user_tokens(make_app: Any) -> None:
    off = make_app()
    assert_error(off.test_client().get("/metrics", headers=SCRAPER), 403, "metrics_disabled")
    on = make_app(metrics_token=TOKEN)
    user = Caller(on.test_client(), new_token(on, "alice"))
    assert_error(user.get("/metrics"), 401, "invalid_metrics_token")
    assert_error(on.test_client().get("/metrics"), 401, "invalid_metrics_token")


def test_metrics_count_tasks_time_routes_by_rule_and_show_queue_depths(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(collectors, "CACHE_SECONDS", 0.0)  # each scrape reads afresh
    app = make_app(metrics_token=TOKEN)
    alice = Caller(app.test_client(), new_token(app, "alice"))
    endpoint_id = alice.register_endpoint()
    task_ids = alice.submit(endpoint_id, alice.register_function(), (1,), (2,), (3,))
    for task_id in task_ids:
        alice.ok("get", f"/v1/tasks/{task_id}")
    alice.get("/v1/tasks/not-a-uuid")

    found = samples(app)
    assert found["outpost_tasks", (("state", "queued"),)] >= 3
    assert found["outpost_tasks", (("state", "success"),)] >= 0  # every state has a series
    timed = ("route", "/v1/tasks/<task_id>"), ("status", "200")
    count = found["outpost_http_request_duration_seconds_count", (("method", "GET"), *timed)]
    assert count >= 3  # one series for the rule, not one per task id
    assert not any(task_ids[0] in str(labels) for _name, labels in found)

    # RabbitMQ's management API refreshes its figures every few seconds.
    depth = ("outpost_queue_messages_ready", (("endpoint_id", endpoint_id), ("queue", "tasks")))
    wait_for(lambda: samples(app).get(depth) == 3, "the task queue's depth of 3")
    page = app.test_client().get("/metrics", headers=SCRAPER).get_data(as_text=True)
    secret_name = app_state(app).topology.task_queue(endpoint_id)
    assert secret_name not in page, "the task queue's secret name was published"
    assert ("outpost_queue_messages_ready", (("endpoint_id", ""), ("queue", "ingest"))) in found


def test_metrics_leave_out_queue_depths_without_a_management_api(make_app: Any) -> None:
    app = make_app(metrics_token=TOKEN, broker_auth="shared", management_url="http://127.0.0.1:1/")
    found = samples(app)
    assert not any(name.startswith("outpost_queue_") for name, _labels in found)
    assert ("outpost_tasks", (("state", "queued"),)) in found


def test_ready_names_the_unreachable_broker_and_health_stays_up(make_app: Any) -> None:
    good = make_app()
    answer = good.test_client().get("/ready")
    assert answer.status_code == 200, answer.get_json()
    assert {name: c["ok"] for name, c in answer.get_json()["checks"].items()} == {
        "database": True,
        "broker": True,
    }
    bad = make_app(amqp_url=NO_BROKER, broker_auth="shared")
    error = assert_error(bad.test_client().get("/ready"), 503, "not_ready")
    assert "broker" in error["message"] and "Connection refused" in error["message"]
    assert error["details"]["database"]["ok"] and not error["details"]["broker"]["ok"]
    assert bad.test_client().get("/health").status_code == 200  # liveness touches neither


def test_multiprocess_mode_sums_every_process(tmp_path: Path, make_app: Any) -> None:
    """Two processes with one PROMETHEUS_MULTIPROC_DIR: a scrape in either reports both."""
    database_url = app_state(make_app()).config.database_url
    script = textwrap.dedent(
        f"""
        import sys
        from prometheus_client.parser import text_string_to_metric_families
        from outpost_service import ServiceConfig, create_app
        app = create_app(ServiceConfig(database_url={database_url!r}, broker_auth="shared",
                                       metrics_token={TOKEN!r}, amqp_url={NO_BROKER!r}))
        client = app.test_client()
        for _ in range(int(sys.argv[1])):
            client.get("/health")
        page = client.get("/metrics", headers={SCRAPER!r}).get_data(as_text=True)
        for family in text_string_to_metric_families(page):
            for s in family.samples:
                if s.name.endswith("_count") and s.labels.get("route") == "/health":
                    print(int(s.value))
        """
    )
    shared = tmp_path / "prometheus"  # of its own: prometheus_client reads every *.db there
    shared.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    runs = [
        subprocess.run(
            [sys.executable, "-c", script, str(n)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout.split()
        for n in (3, 4)
    ]
    assert runs == [["3"], ["7"]], runs


def test_metrics_count_ingested_results_duplicates_and_their_age(
    make_app: Any, amqp_channel: Any
) -> None:
    from .conftest import running_ingest
    from .test_ingest import long_poll, publish_result, success

    app = make_app(metrics_token=TOKEN)
    alice = Caller(app.test_client(), new_token(app, "alice"))
    endpoint_id = alice.register_endpoint()
    (task_id,) = alice.submit(endpoint_id, alice.register_function(), (1,))
    before = samples(app)

    def count(found: dict[Any, float], name: str, *labels: tuple[str, str]) -> float:
        return found.get((name, tuple(labels)), 0.0)

    result = success(task_id, endpoint_id, 1)
    finished = time.time() - 2.0  # the worker finished 2 s before ingest sees it
    result = result.model_copy(update={"timing": {"finished": finished}})
    with running_ingest(app):
        publish_result(amqp_channel, app, result)
        assert long_poll(alice, [task_id])["results"], "the result was not ingested"
        publish_result(amqp_channel, app, result)  # a redelivery
        stored = ("outcome", "stored")
        duplicate = ("outcome", "duplicate")
        name = "outpost_ingest_results_total"
        wait_for(
            lambda: count(samples(app), name, duplicate) > count(before, name, duplicate),
            "the duplicate to be counted",
        )
    after = samples(app)
    assert count(after, name, stored) == count(before, name, stored) + 1
    age = "outpost_ingest_result_age_seconds"
    assert count(after, f"{age}_count") == count(before, f"{age}_count") + 2
    assert count(after, f"{age}_sum") - count(before, f"{age}_sum") >= 4.0  # 2 x >= 2 s
    assert count(after, f"{age}_bucket", ("le", "1.0")) == count(
        before, f"{age}_bucket", ("le", "1.0")
    )


def test_a_standalone_ingest_serves_its_metrics_on_metrics_listen(make_app: Any) -> None:
    from ..e2e.stack import cli
    from ..fixtures.postgres_private import free_port

    config = app_state(make_app()).config  # (the app's cleanup deletes the ingest's queues)
    listen = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "OUTPOST_DATABASE_URL": config.database_url,
        "OUTPOST_AMQP_URL": config.amqp_url,
        "OUTPOST_AMQP_PREFIX": config.amqp_prefix,
        "OUTPOST_BROKER_AUTH": "shared",
        "OUTPOST_METRICS_TOKEN": TOKEN,
        "OUTPOST_METRICS_LISTEN": listen,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen(
        [cli("outpost-service"), "ingest"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "consuming" in line:
                break
        import requests

        url = f"http://{listen}/metrics"
        assert requests.get(url, timeout=30).status_code == 401
        page = requests.get(url, headers=SCRAPER, timeout=30)
        assert page.status_code == 200, page.text
        assert "outpost_ingest_store_failures_total" in page.text
    finally:
        process.terminate()
        process.wait(30)
