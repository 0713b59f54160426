"""A grounded chat in headless Chromium on the bundled model: attach a knowledge base in the
conversation settings, ask, see the cited sources, open one at its span; a question the documents
do not answer shows the "no relevant source" state."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from web_harness import shot

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "knowledge"))

from corpus import RETURNS_MD, SHIPPING_HTML  # noqa: E402

pytestmark = pytest.mark.slow


def test_grounded_chat_cites_and_opens_sources(page, live_server):
    with live_server.api() as api:
        kb = api.post("/api/knowledge-bases", json={"name": "店铺规则"}).json()
        r = api.post(f"/api/knowledge-bases/{kb['id']}/documents", files=[
            ("files", ("returns.md", RETURNS_MD, "text/markdown")),
            ("files", ("shipping.html", SHIPPING_HTML, "text/html"))])
        assert all(d["status"] == "indexed" for d in r.json()["data"])
    page.goto(live_server.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    page.click("#open-settings")
    page.select_option("#set-knowledge", [str(kb["id"])])
    page.fill("#set-max_tokens", "24")
    page.fill("#set-temperature", "0")
    page.click("#save-settings")
    page.fill("#prompt", "退货政策是什么？")
    page.press("#prompt", "Enter")
    page.wait_for_selector(".msg.assistant .sources-box", timeout=120_000)
    first = page.locator(".msg.assistant .source-link").first
    assert "returns.md" in first.inner_text()
    first.click()
    page.wait_for_selector("#source-dialog[open] #source-mark")
    assert "7天内可以无理由退货" in page.inner_text("#source-mark")
    shot(page, "knowledge-source-open")
    page.click("#source-close")
    page.fill("#prompt", "What is the capital of France?")
    page.press("#prompt", "Enter")
    page.wait_for_selector(".msg.assistant .no-source", timeout=120_000)
    assert "no relevant source" in page.locator(".msg.assistant").last.inner_text()
    shot(page, "knowledge-no-source")


def test_knowledge_tab_upload_status_search(page, live_server, tmp_path):
    (tmp_path / "returns.md").write_bytes(RETURNS_MD)
    (tmp_path / "shipping.html").write_bytes(SHIPPING_HTML)
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 broken")
    page.goto(live_server.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    page.click("#tab-knowledge")
    page.fill("#kb-new-name", "售后 after-sales")
    page.click("#kb-new button[type=submit]")
    page.wait_for_selector("#kb-main:not([hidden])")
    page.set_input_files("#kb-files", [str(tmp_path / n) for n in ("returns.md", "shipping.html", "broken.pdf")])
    page.click("#kb-upload")
    page.wait_for_selector("#kb-docs tr.doc-failed")
    rows = page.locator("#kb-docs tr")
    assert rows.count() == 3
    assert page.locator("#kb-docs tr.doc-indexed").count() == 2
    assert "broken.pdf" in page.locator("#kb-docs tr.doc-failed").inner_text()
    page.locator("#kb-docs tr.doc-indexed .doc-reindex").first.click()
    page.wait_for_selector("#toast:has-text('indexed again')")
    page.fill("#kb-query", "is shipping free?")
    page.click("#kb-search button[type=submit]")
    page.wait_for_selector(".kb-hit")
    assert "shipping.html" in page.locator(".kb-hit").first.inner_text()
    shot(page, "knowledge-tab")
    page.fill("#kb-query", "What is the capital of France?")
    page.click("#kb-search button[type=submit]")
    page.wait_for_selector("#kb-hits .no-source")


def test_a_studio_run_answers_from_a_knowledge_base(page, live_server):
    with live_server.api() as api:
        kb = api.post("/api/knowledge-bases", json={"name": "studio rules"}).json()
        api.post(f"/api/knowledge-bases/{kb['id']}/documents", files=[
            ("files", ("returns.md", RETURNS_MD, "text/markdown"))])
    page.goto(live_server.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    page.click("#tab-studio")
    page.click(".card[data-template='customer_service']")
    page.select_option("#studio-knowledge", label="studio rules")
    page.fill("textarea[name='message']", "退货政策是什么？")
    page.fill("#studio-max-tokens", "12")
    page.click("#studio-run")
    page.wait_for_selector("#studio-sources .kb-hit", timeout=120_000)
    assert "returns.md" in page.inner_text("#studio-sources")
    page.wait_for_selector("#studio-run")
    shot(page, "studio-grounded-run")
