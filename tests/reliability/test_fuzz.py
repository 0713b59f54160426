"""Fuzzing with schemathesis over the server's own OpenAPI schema: valid and invalid inputs for
every operation; no 5xx, and every error in the OpenAI shape (the app's /api uses the same)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "apps"))

from app_harness import scripted_server  # noqa: E402

from figures import record  # noqa: E402

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

CASES_PER_OPERATION = 24  # x 2 modes x 45 operations: about 2,000 cases


def test_no_input_makes_a_5xx_or_an_unshaped_error(tmp_path):
    server, engine = scripted_server(tmp_path / "fuzz.db")
    try:
        schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
        operations = [r.ok() for r in schema.get_all_operations()]
        assert len(operations) >= 40
        cases, failures, statuses = 0, [], {}
        started = time.monotonic()
        def fuzz(op, mode) -> None:
            @settings(max_examples=CASES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck), phases=[Phase.generate])
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case) -> None:
                nonlocal cases
                cases += 1
                r = case.call(base_url=server.url, timeout=30)
                statuses[r.status_code // 100] = statuses.get(r.status_code // 100, 0) + 1
                where = f"{case.method} {case.formatted_path} ({mode.value})"
                if r.status_code >= 500:
                    failures.append(f"{where}: {r.status_code} {r.text[:200]}")
                elif r.status_code >= 400 and "json" in r.headers.get("content-type", ""):
                    body = r.json()
                    error = body.get("error") if isinstance(body, dict) else None
                    if not (isinstance(error, dict) and error.get("message") and "type" in error and "code" in error):
                        failures.append(f"{where}: {r.status_code} error not in OpenAI's shape: {r.text[:200]}")

            try:
                run()
            except Unsatisfiable:  # an operation with no input to get wrong (GET /v1/models)
                pass

        for op in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz(op, mode)
        record("fuzzing", cases=cases, operations=len(operations), seconds=round(time.monotonic() - started, 1),
               **{f"{k}xx": v for k, v in sorted(statuses.items())})
        assert cases >= 1000
        assert not failures, failures[:10]
    finally:
        server.stop()
