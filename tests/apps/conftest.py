"""Fixtures: a scripted-model server with a fresh database for each test module."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from app_harness import scripted_server


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    server, engine = scripted_server(tmp_path_factory.mktemp("db") / "app.db", delay=0.01)
    yield server, engine
    server.stop()


@pytest.fixture
def http(app_server) -> Iterator[httpx.Client]:
    server, engine = app_server
    engine.delay = 0.01
    engine.busy = False
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client
