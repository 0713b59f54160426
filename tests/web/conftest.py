"""Browser tests: a real `aigc serve` subprocess on the bundled model, driven by headless Chromium
(Debian's /usr/bin/chromium through Playwright). Screenshots go to test-artifacts/web/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from web_harness import CHROMIUM, LiveServer, start_server, stop_server


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("web"))
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: `make install-test` installs it (scripts/ensure-chromium.sh)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser context (empty localStorage) in English, offline but for our server; errors
    on the page, dialogs and requests to other hosts fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 820}, locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (errors.append(f"unexpected dialog: {d.message}"), d.dismiss()))

    def offline(route) -> None:  # the app must work with no network: nothing may leave this machine
        if route.request.url.startswith(("http://127.0.0.1", "data:", "blob:")):
            route.continue_()
        else:
            errors.append(f"request to another host: {route.request.url}")
            route.abort()

    page.route("**/*", offline)
    page.set_default_timeout(60_000)
    page.errors = errors
    yield page
    context.close()
    assert not errors, errors

