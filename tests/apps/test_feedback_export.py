"""Rated replies -> KTO / DPO / SFT JSONL: the records from a database with branches, loading them
with `datasets` the way TRL does, `aigc data export-feedback`, and the admins' HTTP route."""

from __future__ import annotations

import json
import sys
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from app_harness import error_of, scripted_server

from aigc.accounts import UserStore
from aigc.apps.feedback_export import (
    ANY_OWNER,
    FeedbackExportError,
    dpo_record,
    export_feedback,
    preference_pairs,
)
from aigc.cli import main
from aigc.store import Database
from feedback_harness import MODEL, branching_database

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from finetune_harness import byte_tokenizer  # noqa: E402

PASSWORD = "correct horse battery"
SYSTEM = {"role": "system", "content": "Answer in one word."}
SKY = {"role": "user", "content": "What colour is the sky?"}


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def test_records_follow_the_branches(database_url):
    b = branching_database(database_url)
    db = b.db
    kto, summary = export_feedback(db, "kto")
    by_reply = {r["completion"][0]["content"]: r for r in kto}
    assert sorted(by_reply) == ["22", "4", "5", "Blue.", "Green, obviously.", "Green."]
    assert by_reply["Blue."] == {"prompt": [SYSTEM, SKY], "completion": _assistant("Blue."), "label": True}
    assert by_reply["Green, obviously."]["label"] is False
    # The follow-up was asked on the liked branch: its prompt holds that reply, not the sibling.
    assert by_reply["Green."]["prompt"] == [SYSTEM, SKY, *_assistant("Blue."),
                                            {"role": "user", "content": "And grass?"}]
    assert by_reply["4"]["prompt"] == [{"role": "user", "content": "2+2?"}]  # no system prompt: none added
    assert (summary.positive, summary.negative) == (3, 3)
    assert summary.skipped == {"failed or canned replies": 1, "grounded replies (their sources are not stored)": 1}

    dpo, summary = export_feedback(db, "dpo")
    assert dpo == [
        {"prompt": [SYSTEM, SKY], "chosen": _assistant("Blue."), "rejected": _assistant("Green, obviously.")},
        {"prompt": [{"role": "user", "content": "2+2?"}], "chosen": _assistant("4"), "rejected": _assistant("5")},
        {"prompt": [{"role": "user", "content": "2+2?"}], "chosen": _assistant("4"), "rejected": _assistant("22")},
    ]
    assert [r["rejected"][0]["content"] for r in export_feedback(db, "dpo", model=MODEL)[0]] == [
        "Green, obviously.", "5"]  # both replies by the model asked for

    sft, summary = export_feedback(db, "sft")
    assert [r["messages"][-1]["content"] for r in sft] == ["Blue.", "Green.", "4"]
    assert sft[1]["messages"][:-1] == by_reply["Green."]["prompt"]
    assert export_feedback(db, "kto", model="big")[0] == [
        {"prompt": [{"role": "user", "content": "2+2?"}], "completion": _assistant("22"), "label": False}]
    with pytest.raises(FeedbackExportError, match="unknown format"):
        export_feedback(db, "ppo")


def test_owners_are_kept_apart(tmp_path):
    url = f"sqlite:///{tmp_path}/app.db"
    users = UserStore(Database(url))
    alice, bob = users.add("alice", PASSWORD, admin=True), users.add("bob", PASSWORD)
    db = branching_database(url, owner=alice.id, other_owner=bob.id).db
    assert len(export_feedback(db, "dpo", owner=alice.id)[0]) == 1
    assert len(export_feedback(db, "dpo", owner=bob.id)[0]) == 2
    assert export_feedback(db, "dpo", owner=None)[0] == []  # the single-user room holds nothing here
    assert len(export_feedback(db, "dpo", owner=ANY_OWNER)[0]) == 3


def test_pairs_from_elsewhere_arena_votes():
    votes = [("Name a colour.", "Red.", "Dog."), ([SKY], {"role": "assistant", "content": "Blue."}, "Blue.")]
    assert list(preference_pairs(votes)) == [
        {"prompt": [{"role": "user", "content": "Name a colour."}], "chosen": _assistant("Red."),
         "rejected": _assistant("Dog.")}]  # the tie (equal replies) is left out
    with pytest.raises(FeedbackExportError, match="one assistant message"):
        dpo_record("q", [{"role": "user", "content": "a"}], "b")
    with pytest.raises(FeedbackExportError, match="last message is an assistant"):
        dpo_record([SKY, *_assistant("x")], "a", "b")


@pytest.fixture
def exported(tmp_path):
    url = f"sqlite:///{tmp_path}/app.db"
    branching_database(url)
    files = {}
    for fmt in ("kto", "dpo", "sft"):
        files[fmt] = tmp_path / f"{fmt}.jsonl"
        assert main(["data", "export-feedback", "--format", fmt, "--database-url", url, str(files[fmt])]) == 0
    return url, files


def test_exports_load_with_datasets_as_trl_expects(exported, tmp_path):
    datasets = pytest.importorskip("datasets")
    data_utils = pytest.importorskip("trl.data_utils")
    import transformers

    _, files = exported
    ours = byte_tokenizer()
    ours.save_pretrained(tmp_path / "tok")
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "tok")

    def load(fmt):
        return datasets.load_dataset("json", data_files=str(files[fmt]), split="train",
                                     cache_dir=str(tmp_path / "cache"))

    kto = load("kto")
    assert kto.column_names == ["prompt", "completion", "label"] and kto.num_rows == 6
    assert kto.features["label"].dtype == "bool"
    assert kto.features["prompt"].feature == {"role": datasets.Value("string"), "content": datasets.Value("string")}
    assert all(data_utils.is_conversational(row) for row in kto)
    for row in kto:
        rendered = data_utils.apply_chat_template(row, hf_tok)  # TRL's own rendering of the record
        assert rendered["prompt"] == ours.apply_chat_template(row["prompt"], add_generation_prompt=True)
        assert rendered["completion"].startswith(row["completion"][0]["content"] + "<|im_end|>")

    dpo = load("dpo")
    assert dpo.column_names == ["prompt", "chosen", "rejected"] and dpo.num_rows == 3
    assert all(data_utils.is_conversational(row) for row in dpo)
    first = data_utils.apply_chat_template(dpo[0], hf_tok)
    assert first["chosen"].startswith("Blue.<|im_end|>") and first["rejected"].startswith("Green, obviously.")
    unpaired = data_utils.unpair_preference_dataset(dpo)  # what TRL does to train KTO on pairs
    assert unpaired.column_names == ["prompt", "completion", "label"] and unpaired.num_rows == 6

    sft = load("sft")
    assert sft.column_names == ["messages"] and sft.num_rows == 3
    text = data_utils.apply_chat_template(sft[1], hf_tok)["text"]
    assert text == ours.apply_chat_template(sft[1]["messages"], add_generation_prompt=False)


def test_cli_filters_and_errors(exported, tmp_path, capsys):
    url, files = exported
    out = tmp_path / "mine.jsonl"
    assert main(["data", "export-feedback", "--format", "dpo", "--database-url", url, "--model", MODEL,
                 str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}: 2 preference pairs"
    assert len(out.read_text().splitlines()) == 2
    for argv, message in [
        (["--format", "dpo", str(out)], "exists; pass --force"),
        (["--format", "kto", "--owner", "nobody", "--force", str(out)], "no user named 'nobody'"),
        (["--format", "kto", "--model", "nonexistent", "--force", str(out)], "no kto records to export"),
    ]:
        assert main(["data", "export-feedback", "--database-url", url, *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    missing = tmp_path / "nothing-here.db"
    assert main(["data", "export-feedback", "--format", "kto", "--database-url", f"sqlite:///{missing}",
                 str(tmp_path / "x.jsonl")]) == 2
    assert "no database at" in capsys.readouterr().err
    assert not missing.exists()  # no empty database made


def test_route_is_for_admins(tmp_path):
    url = f"sqlite:///{tmp_path}/app.db"
    users = UserStore(Database(url))
    alice = users.add("alice", PASSWORD, admin=True)
    bob = users.add("bob", PASSWORD)
    branching_database(url, owner=alice.id, other_owner=bob.id)
    server, _ = scripted_server(url)
    try:
        def login(name):
            c = httpx.Client(base_url=server.url, timeout=30)
            assert c.post("/api/auth/login", json={"username": name, "password": PASSWORD}).status_code == 200
            return c

        with closing(login("alice")) as admin, closing(login("bob")) as user:
            r = admin.get("/api/feedback/export", params={"format": "dpo"})
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].startswith("application/jsonl")
            assert 'filename="feedback-dpo.jsonl"' in r.headers["content-disposition"]
            assert r.headers["x-export-summary"] == "3 preference pairs"
            assert [json.loads(line)["chosen"][0]["content"] for line in r.text.splitlines()] == ["Blue.", "4", "4"]
            r = admin.get("/api/feedback/export", params={"format": "kto", "owner": "alice"})
            assert len(r.text.splitlines()) == 3
            error_of(admin.get("/api/feedback/export", params={"format": "ppo"}), 400, "invalid_value")
            error_of(admin.get("/api/feedback/export", params={"owner": "nobody"}), 404, "user_not_found")
            error_of(user.get("/api/feedback/export"), 403, "admin_only")
        with httpx.Client(base_url=server.url, timeout=30) as anonymous:
            error_of(anonymous.get("/api/feedback/export"), 401)
    finally:
        server.stop()


def test_route_in_the_single_user_room(tmp_path):
    url = f"sqlite:///{tmp_path}/app.db"
    branching_database(url)
    server, _ = scripted_server(url)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:  # no accounts: the local user is admin
            r = client.get("/api/feedback/export", params={"format": "sft"})
            assert r.status_code == 200 and len(r.text.splitlines()) == 3
    finally:
        server.stop()
