"""Fixtures: real uvicorn servers (see server_harness.py)."""

from __future__ import annotations

import os

# Before torch loads: idle OpenMP workers sleep instead of spinning, so they do not steal the two
# cores from the event loops and engine threads these tests run side by side (3-8x faster here).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from collections.abc import Iterator  # noqa: E402

import httpx  # noqa: E402
import pytest  # noqa: E402
from server_harness import REAL, ServerThread, tiny_app

from aigc.server.app import create_app
from aigc.settings import Settings


@pytest.fixture(scope="module")
def tiny_server() -> Iterator[ServerThread]:
    server = ServerThread(tiny_app()).start()
    yield server
    server.stop()


@pytest.fixture
def http(tiny_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tiny_server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def real_server(tmp_path_factory) -> Iterator[ServerThread]:
    """The bundled SmolLM2-135M-Instruct, loaded the way `aigc serve` loads it (in the background)."""
    db = tmp_path_factory.mktemp("real-server") / "aigc.db"
    settings = Settings(models=[REAL], max_concurrency=8, max_context=2048, database_url=f"sqlite:///{db}")
    server = ServerThread(create_app(settings)).start()
    server.health_while_loading = httpx.get(server.url + "/health").status_code
    server.app.state.backends.wait_loaded(300)
    yield server
    server.stop()
