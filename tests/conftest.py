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
