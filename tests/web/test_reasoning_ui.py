"""A reasoning model's thinking in headless Chromium: it streams into a collapsed block above the
answer, stays collapsed (and stored apart from the answer) after a reload, opens on a click, is
translated, and is not sent back to the model in the next turn. A scripted model thinks slowly
enough to look at the block mid-stream. Screenshots: test-artifacts/web/chat-reasoning*.png."""

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

WORDS = ["<think>", "\n", "The user ", "greets me. ", "I should ", "greet back ", "and offer help.", "\n",
         "</think>", "\n\n", "Hello! ", "How can I ", "help?"]
THOUGHT = "The user greets me. I should greet back and offer help."
ANSWER = "Hello! How can I help?"
DONE = ".msg.assistant:not([data-id=''])"  # the streaming placeholder has no id yet


@pytest.fixture
def thinker(tmp_path):
    engine = ScriptedEngine(delay=0.15, words=WORDS, once=True)
    backend = LocalBackend("thinker", engine, byte_tokenizer(), max_context=2048, reasoning_parser="think")
    app = create_app(Settings(models=[], database_url=f"sqlite:///{tmp_path}/web.db"), ModelBackends([backend]))
    server = ServerThread(app).start()
    yield server, engine
    server.stop()


def test_reasoning_streams_collapsed_and_survives_a_reload(page, thinker):
    server, engine = thinker
    page.goto(server.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    page.fill("#prompt", "Hi!")
    page.press("#prompt", "Enter")

    # While it thinks: the block is there, growing, collapsed, saying so; the answer has not begun.
    page.wait_for_function("() => { const b = document.querySelector('.msg.assistant .reasoning-body');"
                           " return b && b.textContent.includes('greets me'); }")
    live = page.locator(".msg.assistant").last
    assert live.locator(".msg-body.cursor").count() == 1  # still streaming
    assert live.locator("details.reasoning").get_attribute("open") is None
    assert live.locator(".reasoning summary").inner_text() == "Thinking…"
    assert live.locator(".reasoning-body").is_hidden()
    shot(page, "chat-reasoning-live")

    page.wait_for_selector(DONE)
    reply = page.locator(DONE)
    assert reply.locator(".msg-body").inner_text() == ANSWER
    assert reply.locator("details.reasoning").get_attribute("open") is None
    assert reply.locator(".reasoning summary").inner_text() == "Thought process"

    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_selector(DONE)
    reply = page.locator(DONE)
    assert reply.locator(".msg-body").inner_text() == ANSWER  # the answer alone: no tags, no thinking
    assert reply.locator("details.reasoning").get_attribute("open") is None
    assert reply.locator(".reasoning-body").is_hidden()
    shot(page, "chat-reasoning-collapsed")
    reply.locator(".reasoning summary").click()
    assert reply.locator(".reasoning-body").is_visible()
    assert reply.locator(".reasoning-body").inner_text() == THOUGHT
    shot(page, "chat-reasoning")
    page.screenshot(path="/tmp/reasoning.png")

    page.click("#lang-toggle")
    assert page.locator(f"{DONE} .reasoning summary").inner_text() == "思考过程"
    page.click("#lang-toggle")

    # The next turn: the model sees the earlier answer, not the thinking behind it.
    engine.delay = 0.0
    page.fill("#prompt", "Thanks!")
    page.press("#prompt", "Enter")
    page.wait_for_function("() => document.querySelectorAll(\".msg.assistant:not([data-id=''])\").length === 2")
    prompt = byte_tokenizer().decode(engine.requests[-1].prompt_token_ids)
    assert ANSWER in prompt and "greets me" not in prompt
