"""The monitoring dashboard in headless Chromium against `aigc serve` on the bundled model: after a
few requests (one studio run rated 👎, one unknown model) its cards, uPlot charts and tables show
what the API and /metrics count, in English and in Chinese, with nothing loaded from elsewhere."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from web_harness import MODEL, shot

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from server_harness import metric  # noqa: E402

pytestmark = pytest.mark.slow




def _traffic(live_server) -> None:
    with live_server.api() as api:
        for question in ("What is 2 + 2?", "Name a colour."):
            r = api.post("/v1/chat/completions", json={"model": MODEL, "max_tokens": 8, "temperature": 0,
                                                       "messages": [{"role": "user", "content": question}]})
            assert r.status_code == 200, r.text
        assert api.post("/v1/chat/completions", json={"model": "nope", "messages": []}).status_code in (400, 404)


def test_dashboard_shows_the_servers_numbers(page, live_server):
    _traffic(live_server)
    page.goto(live_server.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#tab-dashboard").is_visible()  # single-user mode: the one user is the admin

    # A studio run rated 👎 from the studio tab, so the per-template feedback has a row.
    page.click("#tab-studio")
    page.wait_for_selector(".card[data-template='summary']")
    page.click(".card[data-template='summary']")
    page.fill("textarea[name='text']", "The meeting moved to Tuesday at ten. Bring the budget figures.")
    page.fill("#studio-max-tokens", "8")
    page.click("#studio-run")
    page.wait_for_selector(".studio-rate .fb-btn[data-rating='-1']", timeout=120_000)
    page.click(".studio-rate .fb-btn[data-rating='-1']")
    page.wait_for_selector(".studio-rate .fb-btn.on[data-rating='-1']")
    shot(page, "studio-rated")

    page.click("#tab-dashboard")
    page.wait_for_selector("body[data-dashboard='ready']")
    page.select_option("#dash-window", "5m")
    page.wait_for_function("() => document.querySelectorAll('#dash-charts .uplot canvas').length === 6")
    with live_server.api() as api:
        body = api.get("/api/dashboard", params={"window": "5m"}).json()
        metrics = api.get("/metrics").text
    mine = body["models"][MODEL]
    assert mine["requests"] == metric(metrics, "aigc_requests_total", model=MODEL) >= 3
    assert mine["generation_tokens"] == metric(metrics, "aigc:generation_tokens_total", model_name=MODEL)

    cards = page.locator("#dash-cards .dash-card")
    assert cards.count() == 9
    requests_card = cards.nth(0).inner_text()
    assert "Requests" in requests_card and str(body["totals"]["requests"]) in requests_card
    assert f"{mine['generation_tokens']:,}" in cards.nth(4).inner_text()
    model_row = page.locator("#dash-models tbody tr", has_text=MODEL)
    assert model_row.count() == 1 and str(mine["requests"]) in model_row.inner_text()
    assert "model_not_found" in page.inner_text("#dash-errors") or "invalid" in page.inner_text("#dash-errors")
    templates = page.inner_text("#dash-feedback-templates")
    assert "Summary" in templates or "summary" in templates.lower()
    # the live server is shared with other browser tests: look at this template's row, which has our 👎
    summary_row = page.locator("#dash-feedback-templates tbody tr", has_text=re.compile("summary", re.I)).first
    assert int(summary_row.locator("td").nth(2).inner_text()) >= 1  # 👎
    assert page.evaluate("() => getComputedStyle(document.querySelector('.u-legend')).display") != "none"
    # the evaluations panel: mounted by evals.js, or hidden when that module is missing
    assert page.evaluate("() => { const el = document.getElementById('evals-panel'); "
                         "return el.hidden || el.childElementCount > 0 || el.offsetHeight === 0; }")
    shot(page, "dashboard")
    page.locator("#dash-feedback-templates").scroll_into_view_if_needed()
    shot(page, "dashboard-tables")

    page.click("#lang-toggle")
    page.wait_for_function("() => document.querySelector('#dash-cards .dash-card-label').textContent === '请求'")
    assert "各模型" in page.inner_text("#dashboard-view")
    shot(page, "dashboard-zh")
