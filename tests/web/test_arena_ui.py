"""Compare and the blind arena in headless Chromium: two scripted models answer side by side at
once; in the arena their names show only after the vote, and the vote reaches the leaderboard.
Screenshots: test-artifacts/web/compare*.png."""

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

ALPHA = ["Autumn ", "wind ", "over ", "the ", "river."]
BETA = ["秋风", "吹过", "江面。"]


@pytest.fixture
def two_models(tmp_path):
    backends = ModelBackends([
        LocalBackend("alpha", ScriptedEngine(delay=0.05, words=ALPHA, once=True), byte_tokenizer(), max_context=2048),
        LocalBackend("beta", ScriptedEngine(delay=0.05, words=BETA, once=True), byte_tokenizer(), max_context=2048),
    ])
    server = ServerThread(create_app(Settings(models=[], database_url=f"sqlite:///{tmp_path}/web.db"),
                                     backends)).start()
    yield server
    server.stop()


def test_side_by_side_then_a_blind_vote(page, two_models):
    page.goto(two_models.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    page.click("#tab-compare")
    page.wait_for_function("() => document.querySelectorAll('#cmp-model-1 option').length === 2")
    page.select_option("#cmp-model-0", "alpha")
    page.select_option("#cmp-model-1", "beta")
    page.fill("#cmp-prompt", "Describe autumn in one line.")
    page.click("#cmp-send")
    page.wait_for_function("() => !document.querySelector('#cmp-side-0 .cursor') && "
                           "!document.querySelector('#cmp-side-1 .cursor') && "
                           "document.querySelector('#cmp-side-1 .cmp-text').textContent.includes('江面')")
    assert page.locator("#cmp-side-0 .cmp-name").inner_text() == "alpha"
    assert page.locator("#cmp-side-0 .cmp-text").inner_text() == "Autumn wind over the river."
    assert page.locator("#cmp-side-1 .cmp-text").inner_text() == "秋风吹过江面。"
    shot(page, "compare-side-by-side")

    page.select_option("#cmp-mode", "arena")
    assert page.locator("#cmp-pickers").is_hidden()
    page.fill("#cmp-prompt", "And in Chinese?")
    page.click("#cmp-send")
    page.wait_for_selector("#cmp-votes:not([hidden])")
    names = [page.locator(f"#cmp-side-{i} .cmp-name").inner_text() for i in (0, 1)]
    assert names == ["Model A", "Model B"]  # blind until the vote
    shot(page, "compare-arena-blind")
    side_a = page.locator("#cmp-side-0 .cmp-text").inner_text()
    page.click("#cmp-votes button[data-winner='a']")
    page.wait_for_function("() => document.querySelector('#cmp-result').textContent.length > 0")
    winner = "alpha" if side_a.startswith("Autumn") else "beta"
    assert page.locator("#cmp-side-0 .cmp-name").inner_text() == winner
    page.wait_for_function("() => document.querySelectorAll('#cmp-board tr').length === 2")
    assert page.locator("#cmp-board tr").first.locator("td").nth(1).inner_text() == winner
    assert page.locator("#cmp-votes").is_hidden()
    shot(page, "compare-arena-voted")

    page.click("#lang-toggle")
    assert page.locator("#tab-compare").inner_text() == "对比"
    page.wait_for_function("() => document.querySelector('#cmp-board-count').textContent === '1 票'")
    page.click("#lang-toggle")
