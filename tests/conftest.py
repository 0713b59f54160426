import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Idle OpenMP workers spin by default and steal the 2 cores from the server's event loop and
# engine threads; passive waiting must be set before torch is imported (see cli/main.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

from database_harness import fresh_database  # noqa: E402


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """On SQLite, and again on PostgreSQL when the tests have one."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


# ---------------------------------------------------------------------------- reliability figures

_FIGURES = os.path.join(os.path.dirname(__file__), "..", "test-artifacts", "reliability.json")


def pytest_sessionstart(session):
    if os.path.exists(_FIGURES):
        os.remove(_FIGURES)  # figures from this run only


def pytest_terminal_summary(terminalreporter):
    """The reliability suite's figures (tests/reliability), at the end of `make test`."""
    if not os.path.exists(_FIGURES):
        return
    import json

    with open(_FIGURES, encoding="utf-8") as f:
        figures = json.load(f)
    terminalreporter.section("reliability figures")
    for name, values in figures.items():
        terminalreporter.write_line(f"{name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
