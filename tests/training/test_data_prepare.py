"""`aigc data prepare`: shards, manifest, validation split, shard I/O, and bad input."""

import json

import numpy as np
import pytest
from pretrain_harness import data_dir, shakespeare_slice, tokenizer_dir

from aigc.cli import main
from aigc.tokenizer import Tokenizer
from aigc.training.data.prepare import prepare_data
from aigc.training.data.shards import DataDir, ShardWriter, TokenStore, token_dtype


def test_manifest_and_shards_hold_every_document():
    data = DataDir.open(data_dir())
    m = data.manifest
    tok = Tokenizer.from_dir(data.tokenizer_path)  # the tokenizer travels with the data
    assert m["dtype"] == "uint16" and m["vocab_size"] == tok.vocab_size
    assert m["eos_token_id"] == tok.token_to_id("<|endoftext|>")
    train, val = m["splits"]["train"], m["splits"]["val"]
    assert val["documents"] > 0 and train["documents"] > 5 * val["documents"]  # ~10% held out
    assert m["sources"][0]["tokens"] == train["tokens"] + val["tokens"] == len(data.split("train")) + len(data.split("val"))
    # Decoding both splits gives back exactly the blank-line-separated documents of the text.
    docs = [d.strip("\n") for d in shakespeare_slice().read_text().split("\n\n") if d.strip()]
    decoded = []
    for split in ("train", "val"):
        ids = data.split(split).read(0, len(data.split(split)))
        assert ids[-1] == m["eos_token_id"]
        decoded += tok.decode(ids).split("<|endoftext|>")[:-1]
    assert sorted(decoded) == sorted(docs)
    assert train["chars"] + val["chars"] == sum(len(d) for d in docs)


def test_split_is_deterministic_by_seed(tmp_path):
    tok = Tokenizer.from_dir(tokenizer_dir())
    kwargs = dict(val_fraction=0.2, show_progress=False)
    a = prepare_data([shakespeare_slice()], tmp_path / "a", tok, seed=1, **kwargs)
    b = prepare_data([shakespeare_slice()], tmp_path / "b", tok, seed=1, **kwargs)
    c = prepare_data([shakespeare_slice()], tmp_path / "c", tok, seed=2, **kwargs)
    assert (tmp_path / "a" / "val-00000.bin").read_bytes() == (tmp_path / "b" / "val-00000.bin").read_bytes()
    assert a["splits"]["val"]["tokens"] == b["splits"]["val"]["tokens"]
    assert (tmp_path / "a" / "val-00000.bin").read_bytes() != (tmp_path / "c" / "val-00000.bin").read_bytes()
    assert c["splits"]["val"]["documents"] > 0


def test_single_document_gets_the_end_of_the_text_as_validation(tmp_path):
    tok = Tokenizer.from_dir(tokenizer_dir())
    m = prepare_data([shakespeare_slice()], tmp_path / "d", tok, doc_split="file", val_fraction=0.1,
                     shard_tokens=5000, show_progress=False)
    train, val = m["splits"]["train"], m["splits"]["val"]
    assert train["documents"] == 1 and len(train["shards"]) > 2  # several shards of 5,000 tokens
    assert val["tokens"] == int((train["tokens"] + val["tokens"]) * 0.1)
    store = DataDir.open(tmp_path / "d").split("val")
    assert store.read(len(store) - 1, 1)[0] == m["eos_token_id"]


def test_shard_writer_and_store_read_across_shards(tmp_path):
    w = ShardWriter(tmp_path, "train", np.uint16, shard_tokens=7)
    for chunk in (range(0, 5), range(5, 20), range(20, 23)):
        w.write(list(chunk))
    tail = w.take_tail(9)  # reaches back into a written shard
    assert tail.tolist() == list(range(14, 23))
    shards = w.close()
    assert [s["tokens"] for s in shards] == [7, 7]
    store = TokenStore(tmp_path, shards, np.dtype(np.uint16))
    assert len(store) == 14 and store.read(5, 6).tolist() == list(range(5, 11))
    with pytest.raises(IndexError):
        store.read(10, 5)
    assert token_dtype(65_536) == np.uint16 and token_dtype(65_537) == np.uint32


@pytest.mark.parametrize(("make", "extra", "message"), [
    (lambda d: None, [], "input not found"),
    (lambda d: (d / "in.txt").write_text("\n\n  \n"), [], "no text found"),
    (lambda d: (d / "in.txt").write_text('{"body": "x"}\n'), ["--format", "jsonl"], "no 'text' field"),
    (lambda d: (d / "in.txt").write_text("hello\n"), ["--val-fraction", "1.5"], "--val-fraction"),
    (lambda d: (d / "in.txt").write_text("hello\n"), ["--tokenizer", "/no/such/tokenizer"], "/no/such/tokenizer"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, make, extra, message):
    make(tmp_path)
    out = tmp_path / "out"
    args = ["data", "prepare", "--input", str(tmp_path / "in.txt"), "--out", str(out), "-q"]
    if "--tokenizer" not in extra:
        args += ["--tokenizer", str(tokenizer_dir())]
    assert main(args + extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


def test_cli_refuses_to_overwrite_and_prints_counts(tmp_path, capsys):
    out = tmp_path / "data"
    args = ["data", "prepare", "--input", str(shakespeare_slice()), "--out", str(out), "--tokenizer",
            str(tokenizer_dir()), "-q"]
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert "train tokens" in stdout and json.loads(stdout.splitlines()[1])["format"] == "text"
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
