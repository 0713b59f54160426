"""Personal data never reaches the server's logs: a logging filter on every handler rewrites a
record's message with the checked PII types (e-mail, phone, ID, card, IP) replaced by their type
("[PHONE]"). Names and addresses are guesses that cost a tagger per line; logs skip them.

On by default (`--redact-pii logs`); `--redact-pii none` turns it off.
"""

from __future__ import annotations

import logging

from aigc.safety.pii import find_pii

LOG_KINDS = ("email", "phone", "cn_id", "bank_card", "ip")
_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "aigc")


def scrub(text: str) -> str:
    entities = find_pii(text, LOG_KINDS)
    for e in reversed(entities):
        text = text[:e.start] + f"[{e.kind.upper()}]" + text[e.end:]
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 -- a malformed record is logging's problem, not ours
            return True
        if any(ch.isdigit() or ch == "@" for ch in message):  # nothing to find without them
            cleaned = scrub(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        return True


def install_log_redaction() -> RedactingFilter:
    """Add the filter to every handler of the root, uvicorn and aigc loggers (idempotent)."""
    chosen = RedactingFilter()
    for name in _LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(chosen)
    return chosen
