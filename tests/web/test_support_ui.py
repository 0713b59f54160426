"""Customer service in headless Chromium on the bundled model: a shop's page on another origin
carries the one-tag widget; a visitor asks, gets a grounded answer with its sources, asks for a
person; a staff member sees the conversation in the app's Support tab and answers; the visitor
sees the answer in the widget. Screenshots of both sides."""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from web_harness import shot

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "knowledge"))

from corpus import RETURNS_MD, SHIPPING_HTML  # noqa: E402

pytestmark = pytest.mark.slow


@contextmanager
def shop_page(render):
    """A shop's page served from its own origin (another port: another origin to the browser);
    `render()` gives its HTML when it is asked for."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_widget_on_a_shop_page_and_the_staff_queue(browser, page, live_server):
    with live_server.api() as api:
        kb = api.post("/api/knowledge-bases", json={"name": "客服资料"}).json()
        r = api.post(f"/api/knowledge-bases/{kb['id']}/documents", files=[
            ("files", ("returns.md", RETURNS_MD, "text/markdown")),
            ("files", ("shipping.html", SHIPPING_HTML, "text/html"))])
        assert all(d["status"] == "indexed" for d in r.json()["data"])
    tag: dict[str, str] = {}  # the tag needs the site's key, the site needs the page's origin
    html = ("<!doctype html><html><head><meta charset='utf-8'><title>小店</title></head><body>"
            "<h1>小店 · Little Shop</h1><p>欢迎选购！</p>{tag}</body></html>")
    with shop_page(lambda: html.format(tag=tag["embed"])) as shop_origin:
        with live_server.api() as api:
            site = api.post("/api/support/sites", json={
                "name": "小店客服", "origins": [shop_origin], "knowledge_base_ids": [kb["id"]],
                "persona": "你是小店的客服小美。", "rules": "不要承诺当天发货"}).json()
        tag["embed"] = site["embed_code"].replace(">", " data-lang=\"zh\">", 1)
        page.goto(shop_origin + "/")
        page.click(".launch")
        page.wait_for_selector(".panel .msg.assistant")  # the greeting
        page.fill(".panel textarea", "退货政策是什么？")
        page.press(".panel textarea", "Enter")
        page.wait_for_selector(".panel .msg.assistant .sources", timeout=120_000)
        page.click(".panel .sources summary")
        assert "returns.md" in page.locator(".panel .msg.assistant .sources").last.inner_text()
        shot(page, "support-widget-answer")

        page.fill(".panel textarea", "转人工")
        page.press(".panel textarea", "Enter")
        page.wait_for_selector(".panel .status:not([hidden])")
        assert "人工客服" in page.inner_text(".panel .status")

        staff = browser.new_context(viewport={"width": 1280, "height": 820}, locale="en-US").new_page()
        staff.goto(live_server.url + "/")
        staff.wait_for_selector("body[data-ready='1']")
        staff.wait_for_selector("#support-count:not([hidden])")
        staff.click("#tab-support")
        staff.wait_for_selector("#sup-queue .kb-pick")
        assert "asked for a person" in staff.inner_text("#sup-queue")
        staff.click("#sup-queue .kb-pick")
        staff.wait_for_selector("#sup-transcript .sup-msg")
        assert "退货政策是什么？" in staff.inner_text("#sup-transcript")
        staff.fill("#sup-reply-text", "您好，我是客服阿明，请把订单号发给我。")
        staff.click("#sup-reply button[type=submit]")
        staff.wait_for_selector("#sup-transcript .sup-msg.staff")
        shot(staff, "support-staff-queue")

        page.wait_for_selector(".panel .msg.staff", timeout=20_000)
        assert "阿明" in page.inner_text(".panel .msg.staff")
        assert "人工客服已接入" in page.inner_text(".panel .status")
        shot(page, "support-widget-staff-reply")
        page.reload()  # the visitor's conversation survives a page load
        page.click(".launch")
        page.wait_for_selector(".panel .msg.staff")
        assert "退货政策是什么？" in page.inner_text(".panel .log")

        staff.click("#sup-resolve")
        staff.wait_for_selector("#sup-chat-state:text('resolved')")
        staff.click("#sup-new-site")
        staff.wait_for_selector("#sup-site:not([hidden])")
        staff.click("#sup-sites .kb-pick")
        staff.wait_for_selector("#sf-embed:not([hidden])")
        assert "/widget.js" in staff.inner_text("#sf-embed-code")
        shot(staff, "support-site-settings")
        staff.context.close()
