"""The login page and the account menu in headless Chromium, against `aigc serve` with accounts."""

from __future__ import annotations

import pytest
from web_harness import shot, start_server, stop_server

from aigc.accounts import UserStore
from aigc.store import Database

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def accounts_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("login")
    UserStore(Database(f"sqlite:///{tmp}/web.db")).add("李雷", "a good password", admin=True)
    server = start_server(tmp, wait_for_model=False)
    yield server
    stop_server(server)


def test_login_keys_and_logout(page, accounts_server):
    page.goto(accounts_server.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    assert page.is_visible("#login-form") and not page.is_visible("#chat-view")
    page.click("#lang-toggle")  # the login page speaks Chinese too
    assert page.inner_text("#login-form h1") == "登录 aigc"
    shot(page, "login-zh")
    page.fill("#login-username", "李雷")
    page.fill("#login-password", "wrong password")
    page.click("#login-submit")
    page.wait_for_selector("#login-error:not([hidden])")
    assert page.inner_text("#login-error") == "用户名或密码错误。"
    page.click("#lang-toggle")
    page.fill("#login-password", "a good password")
    page.click("#login-submit")
    page.wait_for_selector("#chat-view:not([hidden])")
    page.wait_for_selector("body[data-ready='1']")
    assert page.inner_text("#account-name").startswith("李雷")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["aigc_session"]["httpOnly"] and cookies["aigc_session"]["sameSite"] == "Lax"
    page.click("#open-keys")
    page.fill("#key-name", "notebook")
    page.click("#key-create")
    page.wait_for_selector("#key-shown:not([hidden])")
    key = page.inner_text("#key-value")
    assert key.startswith("aigc-")
    assert page.inner_text("#key-list").count("notebook") == 1
    assert page.inner_text("#key-usage").startswith("Today (UTC): 0 model requests")
    shot(page, "keys-dialog")
    page.click("#keys-close")
    assert page.evaluate("document.body.innerText").count(key) == 0  # the key left the page
    page.click("#logout")
    page.wait_for_selector("#login-form:visible")
    assert page.context.cookies() == [] or all(c["name"] != "aigc_session" for c in page.context.cookies())
