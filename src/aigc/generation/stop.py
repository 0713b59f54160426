"""Stop strings over streamed text.

Tokens do not line up with stop strings: "###" may arrive as "#" then "##". The matcher therefore
holds back any tail of the text that could still grow into a stop string, and emits it only once it
cannot (or at the end). A stop string and everything after it are never emitted.
"""

from __future__ import annotations


class StopMatcher:
    def __init__(self, stop_strings: list[str]):
        self.stop_strings = [s for s in stop_strings if s]
        self._held = ""
        self.matched: str | None = None  # the stop string that ended the text, once hit

    @property
    def stopped(self) -> bool:
        return self.matched is not None

    def push(self, piece: str) -> str:
        """Feed the next piece of text; return the part that is safe to emit now."""
        if self.stopped:
            return ""
        text = self._held + piece
        if not self.stop_strings:
            return text
        hit, cut = None, len(text)
        for s in self.stop_strings:
            i = text.find(s)
            if i != -1 and i < cut:
                hit, cut = s, i
        if hit is not None:
            self.matched, self._held = hit, ""
            return text[:cut]
        keep = self._partial_match_length(text)
        self._held = text[len(text) - keep :]
        return text[: len(text) - keep]

    def finish(self) -> str:
        """The end of the text: release what was held back (nothing if a stop string was hit)."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _partial_match_length(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
        best = 0
        for s in self.stop_strings:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if s.startswith(text[len(text) - n :]):
                    best = n
                    break
        return best
