"""A leaderboard from pairwise votes: Elo, updated in vote order (deterministic: the same votes in
the same order give the same table), with win/loss/tie counts.

A vote is (model_a, model_b, outcome) with outcome "a", "b", "tie" or "both_bad"; a tie and "both
bad" count as half a win each (Chatbot Arena's convention), so they pull two ratings together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

BASE_RATING = 1000.0
K_FACTOR = 32.0
OUTCOMES = ("a", "b", "tie", "both_bad")


@dataclass
class Standing:
    model: str
    rating: float = BASE_RATING
    wins: int = 0
    losses: int = 0
    ties: int = 0

    @property
    def battles(self) -> int:
        return self.wins + self.losses + self.ties

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, "rating": round(self.rating, 1), "wins": self.wins, "losses": self.losses,
                "ties": self.ties, "battles": self.battles}


def expected_score(rating: float, other: float) -> float:
    """The chance the first side wins, as Elo models it."""
    return 1.0 / (1.0 + 10 ** ((other - rating) / 400.0))


def leaderboard(votes: Iterable[tuple[str, str, str]], k: float = K_FACTOR) -> list[Standing]:
    """Standings, best first (ties in rating by name)."""
    table: dict[str, Standing] = {}
    for model_a, model_b, outcome in votes:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; one of {', '.join(OUTCOMES)}")
        a = table.setdefault(model_a, Standing(model_a))
        b = table.setdefault(model_b, Standing(model_b))
        score_a = {"a": 1.0, "b": 0.0}.get(outcome, 0.5)
        expected_a = expected_score(a.rating, b.rating)
        a.rating, b.rating = a.rating + k * (score_a - expected_a), b.rating - k * (score_a - expected_a)
        if outcome == "a":
            a.wins, b.losses = a.wins + 1, b.losses + 1
        elif outcome == "b":
            b.wins, a.losses = b.wins + 1, a.losses + 1
        else:
            a.ties, b.ties = a.ties + 1, b.ties + 1
    return sorted(table.values(), key=lambda s: (-s.rating, s.model))
