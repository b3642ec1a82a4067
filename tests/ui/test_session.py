"""The dashboard's sign-in, CSRF check and per-user isolation, in process (real database)."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient

from tests.service.conftest import Caller, new_token


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def signed_in(app: Flask, token: str) -> tuple[FlaskClient, str]:
    browser = app.test_client()
    form = browser.get("/ui/login")
    assert form.status_code == 200
    answer = browser.post(
        "/ui/login", data={"token": token, "csrf_token": csrf_of(form.text), "next": ""}
    )
    assert answer.status_code == 302, answer.text
    page = browser.get("/ui/groups")
    assert page.status_code == 200
    return browser, csrf_of(page.text)


def test_pages_need_a_sign_in(client: FlaskClient) -> None:
    answer = client.get("/ui/groups")
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/ui/login?next=/ui/groups")
    assert client.get("/ui/groups/live").status_code == 401


def test_the_cookie_is_httponly_strict_and_signed(app: Flask) -> None:
    browser = app.test_client()
    form = browser.get("/ui/login")
    cookie = form.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
    assert "Max-Age=" in cookie
    browser.set_cookie("outpost_ui", "forged.value", path="/ui")
    assert browser.get("/ui/groups").status_code == 302


def test_a_wrong_token_is_refused(app: Flask) -> None:
    browser = app.test_client()
    form = browser.get("/ui/login")
    answer = browser.post("/ui/login", data={"token": "nope", "csrf_token": csrf_of(form.text)})
    assert answer.status_code == 401
    assert "unknown token" in answer.text
    assert browser.get("/ui/groups").status_code == 302


def test_a_post_without_the_csrf_token_is_refused(app: Flask) -> None:
    token = new_token(app, "carol")
    browser, csrf = signed_in(app, token)
    gid = "0b4c8a2e-7f53-4d55-9d0e-2a7cbd4cf9a1"
    refused = browser.post(f"/ui/groups/{gid}/retry", data={})
    assert refused.status_code == 403
    assert "CSRF" in refused.text
    wrong = browser.post(f"/ui/groups/{gid}/retry", data={"csrf_token": csrf + "x"})
    assert wrong.status_code == 403
    # with it, the request reaches the API's code: an unknown group is 404
    assert browser.post(f"/ui/groups/{gid}/retry", data={"csrf_token": csrf}).status_code == 404


def test_others_groups_and_tasks_are_not_found(app: Flask) -> None:
    alice = Caller(app.test_client(), new_token(app, "alice"))
    endpoint_id = alice.register_endpoint()
    function_id = alice.register_function()
    (task_id,) = alice.submit(
        endpoint_id, function_id, (-1,), task_group_id="5d0f1c7e-2f4a-4b8e-9a51-0c3e7d2b6f10"
    )
    own, _ = signed_in(app, alice.token)
    assert own.get("/ui/groups/5d0f1c7e-2f4a-4b8e-9a51-0c3e7d2b6f10").status_code == 200
    assert own.get(f"/ui/tasks/{task_id}").status_code == 200
    endpoints = own.get("/ui/endpoints/live").text
    assert endpoint_id in endpoints
    bob, _ = signed_in(app, new_token(app, "bob"))
    assert bob.get("/ui/groups/5d0f1c7e-2f4a-4b8e-9a51-0c3e7d2b6f10").status_code == 404
    assert bob.get(f"/ui/tasks/{task_id}").status_code == 404
    assert endpoint_id not in bob.get("/ui/endpoints/live").text
    assert "5d0f1c7e" not in bob.get("/ui/groups/live").text


def test_sign_out_ends_the_session(app: Flask) -> None:
    browser, csrf = signed_in(app, new_token(app, "dave"))
    assert browser.post("/ui/logout", data={"csrf_token": csrf}).status_code == 302
    assert browser.get("/ui/groups").status_code == 302
