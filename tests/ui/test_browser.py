"""The dashboard in real headless Chromium (Selenium + Debian's chromedriver) against a real
service and a real endpoint (separate processes, tests/e2e/stack.py): sign in, watch a running
group's counts move without a reload, retry failed tasks until they succeed, cancel a group.
Screenshots of every page go to ``$OUTPOST_ARTIFACTS/ui`` (or the test's temporary directory).
Requests without the CSRF token, and another user's group, are checked with ``requests``."""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from outpost import Client, Executor

from ..e2e.stack import RunningEndpoint, RunningService, make_endpoint, start_service, stop_service
from ..recipes import BOOTSTRAP, missing

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT = 90


def pause(index: int) -> int:
    """Task ``index`` takes ``index`` / 2 seconds, so completions spread over time whatever
    the number of workers."""
    time.sleep(index / 2)
    return index


def flaky(index: int, workdir: str) -> str:
    """Fails until the marker file exists (the cause a user fixes before retrying)."""
    if not os.path.exists(os.path.join(workdir, "marker")):
        raise ValueError(f"bad value {index * 17}")
    return f"ok {index}"


def sleeper(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    home = tmp_path_factory.mktemp("ui-service")
    running = start_service(home, f"sqlite:///{home}/outpost.db")
    yield running
    stop_service(running)


@pytest.fixture(scope="module")
def endpoint(
    service: RunningService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningEndpoint]:
    home = tmp_path_factory.mktemp("ui-endpoint")
    running = make_endpoint(service, home, f"ui{uuid.uuid4().hex[:6]}")
    yield running
    running.run("stop", running.name, check=False)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``$OUTPOST_ARTIFACTS/ui`` when set (CI keeps it)."""
    root = os.environ.get("OUTPOST_ARTIFACTS")
    folder = Path(root) / "ui" if root else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        missing("chromium and chromedriver", f"install them with `{BOOTSTRAP}`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,1000")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def text_of(driver: Any, css: str) -> str:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return str(driver.find_element(By.CSS_SELECTOR, css).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``condition()`` until it is true; fail saying ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def sign_in(driver: Any, url: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url + "/ui/login")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "sign-in").click()


def session_for(url: str, token: str) -> tuple[requests.Session, str]:
    """A signed-in ``requests`` session and its CSRF token."""
    http = requests.Session()
    form = http.get(url + "/ui/login", timeout=30)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf, form.text
    answer = http.post(
        url + "/ui/login", data={"token": token, "csrf_token": csrf.group(1)}, timeout=30
    )
    assert answer.status_code == 200 and "Sign out" in answer.text, answer.text
    page_csrf = re.search(r'name="csrf_token" value="([^"]+)"', answer.text)
    assert page_csrf
    return http, page_csrf.group(1)


def test_dashboard_in_a_browser(
    service: RunningService,
    endpoint: RunningEndpoint,
    browser: Any,
    shots: Path,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    url = service.url
    client = Client(url=service.url, token=service.token)

    # a wrong token is refused, with the API's reason
    sign_in(driver, url, "not-a-token")
    wait_for(lambda: "unknown token" in text_of(driver, "#login-error"), "the login error")
    driver.save_screenshot(str(shots / "login.png"))

    sign_in(driver, url, service.token)
    wait_for(lambda: "/ui/groups" in driver.current_url, "the groups page")

    # a running group: its counts move on the page without a reload
    count = 8
    with Executor(endpoint_id=endpoint.endpoint_id, client=client) as ex:
        futures = [ex.submit(pause, i) for i in range(count)]
        group = ex.task_group_id
        wait_for(lambda: all(f.task_id for f in futures), "task ids")
        driver.get(f"{url}/ui/groups/{group}")
        driver.execute_script("window.notReloaded = true;")
        seen: set[str] = set()

        def finished() -> bool:
            seen.add(text_of(driver, "#count-success"))
            return text_of(driver, "#count-success") == str(count)

        wait_for(finished, f"{count} successes on the group page")
        assert [f.result(WAIT) for f in futures] == list(range(count))
    assert driver.execute_script("return window.notReloaded === true;")
    moved = {s for s in seen if s.isdigit() and 0 < int(s) < count}
    assert moved, f"the success count never showed an intermediate value: {sorted(seen)}"
    driver.save_screenshot(str(shots / "group.png"))

    # failures grouped by error with numbers masked; retry them from the page
    with Executor(endpoint_id=endpoint.endpoint_id, client=client) as ex:
        failing = [ex.submit(flaky, i, str(tmp_path)) for i in range(1, 5)]
        retry_group = ex.task_group_id
        for future in failing:
            assert isinstance(future.exception(WAIT), ValueError)
    driver.get(f"{url}/ui/groups/{retry_group}")
    wait_for(lambda: text_of(driver, "#count-failed") == "4", "4 failures")
    failures = text_of(driver, "#failures")
    assert "ValueError: bad value <n>" in failures and "4" in failures, failures
    driver.save_screenshot(str(shots / "group-failures.png"))
    driver.find_element(By.CSS_SELECTOR, "#failures a").click()
    wait_for(lambda: text_of(driver, "#task-state") == "failed", "a failed task's page")
    assert "ValueError" in text_of(driver, "#traceback")
    assert [e.split()[0] for e in text_of(driver, "#events").splitlines()][-1] == "failed"
    driver.save_screenshot(str(shots / "task.png"))

    (tmp_path / "marker").touch()  # the cause is fixed
    driver.get(f"{url}/ui/groups/{retry_group}")
    driver.find_element(By.ID, "retry-failed").click()
    wait_for(
        lambda: (text_of(driver, "#count-success"), text_of(driver, "#count-failed")) == ("4", "0"),
        "the retried tasks to succeed",
    )
    assert text_of(driver, "#count-retried") == "4"
    assert text_of(driver, "#no-failures")

    # cancel a group of long tasks
    with Executor(endpoint_id=endpoint.endpoint_id, client=client) as ex:
        long = [ex.submit(sleeper, 120) for _ in range(3)]
        cancel_group = ex.task_group_id
        wait_for(lambda: all(f.task_id for f in long), "task ids")
        driver.get(f"{url}/ui/groups/{cancel_group}")
        driver.find_element(By.ID, "cancel-group").click()
        wait_for(lambda: text_of(driver, "#count-cancelled") == "3", "3 cancelled tasks")
        for future in long:
            wait_for(future.done, "the futures to end")
            assert future.cancelled() or future.exception(0) is not None

    driver.get(f"{url}/ui/groups")
    wait_for(lambda: retry_group in driver.page_source, "the groups list")
    driver.save_screenshot(str(shots / "groups.png"))
    driver.get(f"{url}/ui/endpoints")
    wait_for(lambda: "online" in text_of(driver, "#endpoints"), "the endpoint online")
    driver.save_screenshot(str(shots / "endpoints.png"))

    # sign out: the pages need a sign-in again
    driver.find_element(By.ID, "logout").click()
    wait_for(lambda: "/ui/login" in driver.current_url, "the login page")
    driver.get(f"{url}/ui/groups")
    assert "/ui/login" in driver.current_url

    # no CSRF token: refused; another user's group: not found
    http, csrf = session_for(url, service.token)
    refused = http.post(f"{url}/ui/groups/{cancel_group}/cancel", data={}, timeout=30)
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert http.post(
        f"{url}/ui/groups/{cancel_group}/cancel", data={"csrf_token": csrf}, timeout=30
    ).ok
    bob, _ = session_for(url, service.create_user("bob"))
    assert bob.get(f"{url}/ui/groups/{group}", timeout=30).status_code == 404
    assert bob.get(f"{url}/ui/groups/{group}/live", timeout=30).status_code == 404
    print(f"screenshots in {shots}")
