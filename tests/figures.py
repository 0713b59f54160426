"""The reliability suite's figures (cases run, faults injected, messages checked), collected by
its tests and printed at the end of `make test` (tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

FIGURES = Path(__file__).resolve().parents[1] / "test-artifacts" / "reliability.json"


def record(name: str, **values: float | int | str) -> None:
    data = json.loads(FIGURES.read_text()) if FIGURES.is_file() else {}
    data[name] = values
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps(data, indent=1, ensure_ascii=False))
