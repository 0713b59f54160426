"""The dashboard's "Export feedback" in headless Chromium: replies rated 👍 and 👎 in the chat (a
regenerated reply, so the two are a DPO pair) download as TRL JSON Lines in each format, with the
server's file name, the model filter applied, and a message instead of an empty file. A scripted
model answers. Screenshots: test-artifacts/web/dashboard-export*.png."""

from __future__ import annotations

import json
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
    engine = ScriptedEngine(delay=0.01, words=["Blue ", "is ", "a ", "colour."], once=True)
    second = ScriptedEngine(delay=0.0, words=["Other."], once=True)
    backends = ModelBackends([LocalBackend("scripted", engine, byte_tokenizer(), max_context=2048),
                              LocalBackend("other", second, byte_tokenizer(), max_context=2048)])
    app = create_app(Settings(models=[], database_url=f"sqlite:///{tmp_path}/web.db"), backends)
    server = ServerThread(app).start()
    yield server, engine
    server.stop()


def reply_is(page, text: str) -> None:
    page.wait_for_function("(text) => { const r = [...document.querySelectorAll(\".msg.assistant:not([data-id=''])"
                           " .msg-body\")].pop(); return r && r.textContent.trim() === text; }", arg=text)


def rate(page, rating: int) -> None:
    reply = page.locator(DONE).last
    reply.hover()
    reply.locator(f".fb-btn[data-rating='{rating}']").click()
    page.wait_for_selector(f"{DONE} .fb-btn.on[data-rating='{rating}']")


def download(page, fmt: str, tmp_path: Path) -> tuple[str, list[dict]]:
    page.select_option("#dash-export-format", fmt)
    with page.expect_download() as info:
        page.click("#dash-export-download")
    dl = info.value
    path = tmp_path / dl.suggested_filename
    dl.save_as(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    return dl.suggested_filename, [json.loads(line) for line in lines]


def test_rated_replies_download_as_training_data(page, scripted, tmp_path):
    server, engine = scripted
    page.goto(server.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    page.fill("#prompt", "Name a colour")
    page.press("#prompt", "Enter")
    reply_is(page, "Blue is a colour.")
    rate(page, 1)
    engine.words = ["Purple."]
    reply = page.locator(DONE).last
    reply.hover()
    reply.locator(".regen-btn").click()
    reply_is(page, "Purple.")
    rate(page, -1)

    page.click("#tab-dashboard")
    page.wait_for_selector("body[data-dashboard='ready']")
    assert page.locator("#dash-export").is_visible()  # single-user mode: the one user is the admin
    assert page.locator("#dash-export-format option").all_inner_texts() == [
        "KTO: every rated reply", "DPO: liked over disliked pairs", "SFT: liked replies"]

    name, records = download(page, "dpo", tmp_path)
    assert name == "feedback-dpo.jsonl"
    assert records == [{"prompt": [{"role": "user", "content": "Name a colour"}],
                        "chosen": [{"role": "assistant", "content": "Blue is a colour."}],
                        "rejected": [{"role": "assistant", "content": "Purple."}]}]
    page.wait_for_function("() => document.getElementById('toast').textContent.includes('feedback-dpo.jsonl')")
    page.locator("#dash-export").scroll_into_view_if_needed()
    shot(page, "dashboard-export")

    name, records = download(page, "kto", tmp_path)
    assert name == "feedback-kto.jsonl"
    assert [(r["completion"][0]["content"], r["label"]) for r in records] == [("Blue is a colour.", True),
                                                                              ("Purple.", False)]
    assert all(set(r) == {"prompt", "completion", "label"} and r["prompt"][-1]["role"] == "user" for r in records)
    name, records = download(page, "sft", tmp_path)
    assert name == "feedback-sft.jsonl"
    assert records == [{"messages": [{"role": "user", "content": "Name a colour"},
                                     {"role": "assistant", "content": "Blue is a colour."}]}]

    # With a model chosen above, that model's replies only: none of "other"'s are rated, so no file.
    page.select_option("#dash-model", "other")
    page.wait_for_function("() => document.getElementById('dash-model').value === 'other'")
    page.select_option("#dash-export-format", "kto")
    downloads: list = []
    page.on("download", lambda d: downloads.append(d))
    page.click("#dash-export-download")
    page.wait_for_function("() => document.getElementById('toast').textContent.startsWith('Nothing to export')")
    assert not downloads

    page.click("#lang-toggle")
    page.wait_for_function("() => document.querySelector('#dash-export-download span').textContent === '下载 JSONL'")
    page.locator("#dash-export").scroll_into_view_if_needed()
    shot(page, "dashboard-export-zh")
