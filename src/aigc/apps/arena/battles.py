"""Battles: one prompt, two models, two replies, and (in the arena) a vote.

A battle belongs to whoever started it (another owner's is "not found"); votes of every owner make
the server's one leaderboard. A blind battle hides its models' names until it is voted on.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from aigc.apps.arena.ratings import OUTCOMES
from aigc.apps.chat.conversations import NotFoundError, iso
from aigc.apps.feedback_export import ANY_OWNER, sibling_pairs
from aigc.store import Database
from aigc.store.models import ArenaBattle, utcnow

SIDES = ("a", "b")


class ArenaError(ValueError):
    """A request the arena cannot take (the API answers 400 with `param`)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class AlreadyVotedError(ArenaError):
    """A second vote on one battle (409): the first one counts."""

    code = "already_voted"


class ArenaStore:
    def __init__(self, db: Database, owner: int | None = None):
        self.db, self.owner = db, owner

    def scoped(self, owner: int | None) -> ArenaStore:
        return ArenaStore(self.db, owner)

    def _get(self, s: Any, battle_id: int) -> ArenaBattle:
        battle = s.get(ArenaBattle, battle_id)
        if battle is None or battle.user_id != self.owner:
            raise NotFoundError("battle", battle_id)
        return battle

    def create(self, messages: list[dict[str, Any]], model_a: str, model_b: str, blind: bool) -> dict[str, Any]:
        with self.db.session() as s:
            battle = ArenaBattle(user_id=self.owner, messages=messages, model_a=model_a, model_b=model_b, blind=blind)
            s.add(battle)
            s.flush()
            return battle_dict(battle)

    def finish(self, battle_id: int, side: str, text: str, finish_reason: str | None) -> None:
        """Store one side's reply (as far as it got)."""
        with self.db.session() as s:
            battle = self._get(s, battle_id)
            setattr(battle, f"reply_{side}", text)
            setattr(battle, f"finish_{side}", finish_reason)

    def vote(self, battle_id: int, winner: str) -> dict[str, Any]:
        if winner not in OUTCOMES:
            raise ArenaError(f"winner must be one of {', '.join(OUTCOMES)}", param="winner")
        with self.db.session() as s:
            battle = self._get(s, battle_id)
            if battle.winner is not None:
                raise AlreadyVotedError("this battle has been voted on already")
            battle.winner, battle.voted_at = winner, utcnow()
            s.flush()
            return battle_dict(battle)

    def get(self, battle_id: int) -> dict[str, Any]:
        with self.db.session() as s:
            return battle_dict(self._get(s, battle_id))

    def votes(self) -> list[tuple[str, str, str]]:
        """Every owner's votes, oldest first: (model_a, model_b, winner) — the leaderboard's input."""
        with self.db.session() as s:
            rows = s.execute(select(ArenaBattle.model_a, ArenaBattle.model_b, ArenaBattle.winner)
                             .where(ArenaBattle.winner.is_not(None))
                             .order_by(ArenaBattle.voted_at, ArenaBattle.id)).all()
        return [(a, b, w) for a, b, w in rows]

    def sibling_votes(self) -> list[tuple[str, str, str]]:
        """Votes a chat's ratings make: a 👍 reply and a 👎 sibling (a regenerated answer to the same
        message, the pairs DPO exports too) written by two different models count as a win of the first."""
        with self.db.session() as s:
            rows = sibling_pairs(s, ANY_OWNER, None)
        return [(r.chosen_model, r.rejected_model, "a") for r in rows
                if r.chosen_model and r.rejected_model and r.chosen_model != r.rejected_model]


def battle_dict(b: ArenaBattle) -> dict[str, Any]:
    revealed = not b.blind or b.winner is not None
    return {"id": b.id, "blind": b.blind, "created_at": iso(b.created_at), "messages": b.messages,
            "models": [b.model_a, b.model_b] if revealed else None,
            "replies": [b.reply_a, b.reply_b], "finish_reasons": [b.finish_a, b.finish_b],
            "winner": b.winner, "voted_at": iso(b.voted_at) if b.voted_at else None}
