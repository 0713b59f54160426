"""Branching conversations in headless Chromium: a regenerated reply shows ‹ 2/2 ›, ‹ brings the
previous reply back; an edited question gets its own counter, and switching back shows its old
branch as it was left; "fork from here" opens a new conversation with the path; the counter is
translated. A scripted model answers with whatever the test sets. Screenshots:
test-artifacts/web/chat-branch*.png."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from web_harness import shot

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "apps"))

from app_harness import ScriptedEngine  # noqa: E402
from server_harness import ServerThread, byte_tokenizer  # noqa: E402  (app_harness put it on the path)

from aigc.server.app import create_app  # noqa: E402
from aigc.server.backends import ModelBackends  # noqa: E402
from aigc.server.local_backend import LocalBackend  # noqa: E402
from aigc.settings import Settings  # noqa: E402

pytestmark = pytest.mark.slow

DONE = ".msg.assistant:not([data-id=''])"  # the streaming placeholder has no id yet


@pytest.fixture
def scripted(tmp_path):
    engine = ScriptedEngine(delay=0.01, words=["Reply ", "one."], once=True)
    backend = LocalBackend("scripted", engine, byte_tokenizer(), max_context=2048)
    app = create_app(Settings(models=[], database_url=f"sqlite:///{tmp_path}/web.db"), ModelBackends([backend]))
    server = ServerThread(app).start()
    yield server, engine
    server.stop()


def reply_is(page, text: str) -> None:
    page.wait_for_function("(text) => { const r = [...document.querySelectorAll(\".msg.assistant:not([data-id=''])"
                           " .msg-body\")].pop(); return r && r.textContent.trim() === text; }", arg=text)


def test_regenerate_edit_switch_and_fork(page, scripted):
    server, engine = scripted
    page.goto(server.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    page.fill("#prompt", "Name a colour")
    page.press("#prompt", "Enter")
    reply_is(page, "Reply one.")
    assert page.locator(".branch-nav").count() == 0  # one version: no counter

    # Regenerate: the new reply is version 2 of 2, and ‹ brings the first one back.
    engine.words = ["Reply ", "two."]
    reply = page.locator(DONE).last
    reply.hover()
    reply.locator(".regen-btn").click()
    reply_is(page, "Reply two.")
    nav = page.locator(".msg.assistant .branch-nav")
    assert nav.locator(".branch-count").inner_text() == "2/2"
    assert nav.locator(".branch-next").is_disabled() and nav.locator(".branch-prev").is_enabled()
    shot(page, "chat-branch-regenerated")
    nav.locator(".branch-prev").click()
    reply_is(page, "Reply one.")
    assert page.locator(".msg.assistant .branch-count").inner_text() == "1/2"
    assert page.locator(".msg.assistant .branch-prev").is_disabled()
    assert page.locator(".msg.assistant").count() == 1  # the other reply is not on screen

    # Edit the question: the new text is version 2 of 2 of the user message, answered anew.
    engine.words = ["Reply ", "three."]
    question = page.locator(".msg.user").first
    question.hover()
    question.locator(".edit-btn").click()
    page.fill(".edit-box textarea", "Name a fruit")
    page.click(".edit-save")
    reply_is(page, "Reply three.")
    user_nav = page.locator(".msg.user .branch-nav")
    assert page.locator(".msg.user .msg-body").inner_text() == "Name a fruit"
    assert user_nav.locator(".branch-count").inner_text() == "2/2"
    assert page.locator(".msg.assistant .branch-nav").count() == 0  # its reply has no siblings
    shot(page, "chat-branch-edited")

    # Back to the first question: its branch as it was left (the first reply, 1/2).
    user_nav.locator(".branch-prev").click()
    page.wait_for_function("() => document.querySelector('.msg.user .msg-body')?.textContent.trim() === 'Name a colour'")
    reply_is(page, "Reply one.")
    assert page.locator(".msg.user .branch-count").inner_text() == "1/2"
    assert page.locator(".msg.assistant .branch-count").inner_text() == "1/2"
    # A reload shows the same branch: the server remembers it.
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    reply_is(page, "Reply one.")
    assert page.locator(".msg.assistant .branch-count").inner_text() == "1/2"
    shot(page, "chat-branch")

    # The counter's arrows are translated.
    page.click("#lang-toggle")
    page.wait_for_function("() => document.querySelector('.msg.assistant .branch-next')?.title === '下一个版本'")
    shot(page, "chat-branch-zh")
    page.click("#lang-toggle")

    # Fork from the first reply: a new conversation with the question and that reply.
    reply = page.locator(DONE).last
    reply.hover()
    reply.locator(".fork-btn").click()
    page.wait_for_function("() => document.querySelectorAll('#conv-list .conv-item').length === 2")
    page.wait_for_function("() => document.querySelectorAll('.msg').length === 2 && !document.querySelector('.branch-nav')")
    assert page.locator(".msg.user .msg-body").inner_text() == "Name a colour"
    reply_is(page, "Reply one.")
    assert page.locator("#conv-list .conv-item.active").count() == 1
    # The two are told apart in the sidebar: the fork's title says it is one.
    titles = page.locator("#conv-list .conv-title").all_inner_texts()
    assert page.locator("#conv-list .conv-item.active .conv-title").inner_text() == "Name a colour (fork)"
    assert sorted(titles) == ["Name a colour", "Name a colour (fork)"]
    shot(page, "chat-branch-forked")

    # Search covers every branch: opening a hit on a branch not on screen shows that branch.
    page.fill("#search", "a fruit")
    page.wait_for_function("() => document.querySelectorAll('#conv-list .conv-item').length === 1")
    page.click("#conv-list .conv-item")
    page.wait_for_function("() => document.querySelector('.msg.user .msg-body')?.textContent.trim() === 'Name a fruit'")
    reply_is(page, "Reply three.")
    assert page.locator(".msg.user .branch-count").inner_text() == "2/2"
    shot(page, "chat-branch-search")
