"""Compare and arena through the real server: two models streamed at once, blind battles whose
names show only after the vote, and a leaderboard the votes move deterministically."""

from __future__ import annotations

import httpx
import pytest
from app_harness import ScriptedEngine, error_of, events_of
from server_harness import ServerThread, byte_tokenizer

from aigc.apps.arena.ratings import BASE_RATING, K_FACTOR, expected_score, leaderboard
from aigc.server.app import create_app
from aigc.server.backends import ModelBackends
from aigc.server.local_backend import LocalBackend
from aigc.settings import Settings

ALPHA = ["alpha ", "says ", "one."]
BETA = ["beta ", "says ", "two."]


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    db = tmp_path_factory.mktemp("arena") / "web.db"
    backends = ModelBackends([
        LocalBackend("alpha", ScriptedEngine(delay=0.05, words=ALPHA, once=True), byte_tokenizer(), max_context=2048),
        LocalBackend("beta", ScriptedEngine(delay=0.05, words=BETA, once=True), byte_tokenizer(), max_context=2048),
    ])
    server = ServerThread(create_app(Settings(models=[], database_url=f"sqlite:///{db}"), backends)).start()
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http
    server.stop()


def test_elo_is_deterministic_and_half_counts_ties():
    votes = [("alpha", "beta", "a"), ("beta", "gamma", "tie"), ("alpha", "gamma", "both_bad")]
    first, again = leaderboard(votes), leaderboard(list(votes))
    assert [s.to_dict() for s in first] == [s.to_dict() for s in again]
    table = {s.model: s for s in first}
    assert table["alpha"].wins == 1 and table["beta"].losses == 1 and table["gamma"].ties == 2
    # the first vote alone: an even match moves each rating by K/2
    one = {s.model: s.rating for s in leaderboard(votes[:1])}
    assert one == {"alpha": BASE_RATING + K_FACTOR / 2, "beta": BASE_RATING - K_FACTOR / 2}
    assert abs(expected_score(1100, 1000) - 0.640) < 1e-3
    with pytest.raises(ValueError):
        leaderboard([("a", "b", "draw")])


def test_compare_streams_both_models_at_once(arena):
    events = events_of(arena.post("/api/compare", json={"prompt": "Hi", "models": ["alpha", "beta"]}))
    assert events[0] == {"type": "battle", "id": events[0]["id"], "blind": False, "models": ["alpha", "beta"]}
    kinds = [(e["type"], e.get("side")) for e in events[1:]]
    first_done = min(i for i, k in enumerate(kinds) if k[0] == "done")
    assert ("delta", 0) in kinds[:first_done] and ("delta", 1) in kinds[:first_done]  # interleaved, not in turn
    text = {side: "".join(e["text"] for e in events if e["type"] == "delta" and e["side"] == side) for side in (0, 1)}
    assert text == {0: "alpha says one.", 1: "beta says two."}
    stored = arena.get(f"/api/arena/battles/{events[0]['id']}").json()
    assert stored["replies"] == ["alpha says one.", "beta says two."] and stored["finish_reasons"] == ["stop", "stop"]


def test_a_blind_battle_reveals_names_after_the_vote_and_moves_the_leaderboard(arena):
    before = {s["model"]: s for s in arena.get("/api/arena/leaderboard").json()["data"]}
    events = events_of(arena.post("/api/arena/battles", json={"messages": [{"role": "user", "content": "Hi"}]}))
    battle = events[0]
    assert battle["blind"] is True and battle["models"] is None
    hidden = arena.get(f"/api/arena/battles/{battle['id']}").json()
    assert hidden["models"] is None
    voted = arena.post(f"/api/arena/battles/{battle['id']}/vote", json={"winner": "a"}).json()
    model_a, model_b = voted["models"]
    assert {model_a, model_b} == {"alpha", "beta"} and voted["winner"] == "a"
    # side a said what model a says: the sides were not swapped behind the names
    side_a = "".join(e["text"] for e in events if e["type"] == "delta" and e["side"] == 0)
    assert side_a.startswith(model_a)
    error_of(arena.post(f"/api/arena/battles/{battle['id']}/vote", json={"winner": "b"}), 409, "already_voted")
    after = {s["model"]: s for s in arena.get("/api/arena/leaderboard").json()["data"]}
    assert after[model_a]["wins"] == before.get(model_a, {"wins": 0})["wins"] + 1
    assert after[model_a]["rating"] > after[model_b]["rating"]


def test_bad_requests_are_4xx(arena):
    error_of(arena.post("/api/compare", json={"prompt": "Hi"}), 400)  # no models named
    error_of(arena.post("/api/compare", json={"prompt": "Hi", "models": ["alpha", "alpha"]}), 400)
    error_of(arena.post("/api/compare", json={"prompt": "Hi", "models": ["alpha", "nope"]}), 404)
    error_of(arena.post("/api/compare", json={"prompt": "Hi", "messages": [{"role": "user", "content": "x"}],
                                              "models": ["alpha", "beta"]}), 422)  # the body's shape
    error_of(arena.post("/api/compare", json={"messages": [{"role": "assistant", "content": "x"}],
                                              "models": ["alpha", "beta"]}), 400)
    error_of(arena.post("/api/arena/battles/999999/vote", json={"winner": "a"}), 404)
    error_of(arena.post("/api/arena/battles/abc/vote", json={"winner": "a"}), 404)
    battle = events_of(arena.post("/api/arena/battles", json={"prompt": "Hi"}))[0]
    error_of(arena.post(f"/api/arena/battles/{battle['id']}/vote", json={"winner": "draw"}), 422)


def test_one_model_is_not_an_arena(tmp_path):
    backends = ModelBackends([LocalBackend("solo", ScriptedEngine(words=ALPHA, once=True), byte_tokenizer(),
                                           max_context=2048)])
    server = ServerThread(create_app(Settings(models=[], database_url=f"sqlite:///{tmp_path}/w.db"), backends)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            error_of(http.post("/api/arena/battles", json={"prompt": "Hi"}), 400, "not_enough_models")
    finally:
        server.stop()


def test_regenerated_replies_by_two_models_vote_and_arena_votes_export_as_dpo_pairs(tmp_path):
    from aigc.apps.arena.battles import ArenaStore
    from aigc.apps.feedback_export import export_feedback
    from aigc.store import Conversation, Database, Feedback, Message

    db = Database(f"sqlite:///{tmp_path}/w.db")
    with db.session() as s:
        conv = Conversation(title="t")
        s.add(conv)
        s.flush()
        question = Message(conversation_id=conv.id, position=0, role="user", content="Name a colour.")
        s.add(question)
        s.flush()
        replies = [Message(conversation_id=conv.id, position=i + 1, parent_id=question.id, role="assistant",
                           content=text, model=model, finish_reason="stop")
                   for i, (text, model) in enumerate([("Blue.", "alpha"), ("Banana.", "beta")])]
        s.add_all(replies)
        s.flush()
        s.add_all([Feedback(message_id=replies[0].id, rating=1), Feedback(message_id=replies[1].id, rating=-1)])
    store = ArenaStore(db)
    assert store.sibling_votes() == [("alpha", "beta", "a")]

    battle = store.create([{"role": "user", "content": "Say hi"}], "alpha", "beta", blind=True)
    store.finish(battle["id"], "a", "Hello!", "stop")
    store.finish(battle["id"], "b", "Go away.", "stop")
    store.vote(battle["id"], "a")
    tie = store.create([{"role": "user", "content": "2+2?"}], "alpha", "beta", blind=True)
    store.vote(tie["id"], "tie")  # prefers neither: no pair
    records, summary = export_feedback(db, "dpo")
    arena = [r for r in records if r["prompt"] == [{"role": "user", "content": "Say hi"}]]
    assert arena == [{"prompt": [{"role": "user", "content": "Say hi"}],
                      "chosen": [{"role": "assistant", "content": "Hello!"}],
                      "rejected": [{"role": "assistant", "content": "Go away."}]}]
    assert summary.arena == 1 and len(records) == 2  # the sibling pair and the arena pair


def test_a_side_failing_with_any_error_ends_that_side_not_the_stream(arena, monkeypatch):
    from aigc.apps.arena.battles import ArenaStore

    real_finish = ArenaStore.finish

    def finish(self, battle_id, side, text, finish_reason):
        if side == "a":
            raise RuntimeError("disk full")
        return real_finish(self, battle_id, side, text, finish_reason)

    monkeypatch.setattr(ArenaStore, "finish", finish)
    events = events_of(arena.post("/api/compare", json={"prompt": "Hi", "models": ["alpha", "beta"]}, timeout=30))
    ends = {e["side"]: e for e in events if e["type"] in ("done", "error")}
    assert ends[0]["type"] == "error" and ends[0]["error"]["code"] == "model_error"
    assert ends[1]["type"] == "done" and ends[1]["finish_reason"] == "stop"
