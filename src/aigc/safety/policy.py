"""A deployment's safety settings, parsed at the edge (CLI flags, settings) into plain values."""

from __future__ import annotations

REDACTION_PLACES = ("logs", "store", "remote")


def parse_redaction(text: str) -> list[str]:
    """'logs,remote' -> ['logs', 'remote']; 'none' -> []; anything else is a one-line error."""
    parts = [p.strip().lower() for p in text.split(",") if p.strip()]
    if parts == ["none"]:
        return []
    bad = [p for p in parts if p not in REDACTION_PLACES]
    if bad or not parts:
        raise ValueError(f"--redact-pii {text!r}: expected none or a comma-separated list of "
                         f"{', '.join(REDACTION_PLACES)}")
    return list(dict.fromkeys(parts))
