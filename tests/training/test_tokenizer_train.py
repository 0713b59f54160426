"""`aigc train tokenizer`: byte-level BPE with special tokens and ChatML, opened alike by us and transformers."""

import gzip
import json

import pytest
import transformers
from pretrain_harness import VOCAB, shakespeare_slice, tokenizer_dir

from aigc.cli import main
from aigc.tokenizer import Tokenizer
from aigc.training.tokenizer_train import MIN_VOCAB_SIZE, SPECIAL_TOKENS, script_of, train_bpe

MIXED = "To be, or not to be: 2024 年，床前明月光 🌙 — ça va?"


def test_trained_tokenizer_has_exact_vocab_specials_and_round_trips():
    tok = Tokenizer.from_dir(tokenizer_dir())
    assert tok.vocab_size == VOCAB
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert all(tok.is_special(i) for i in range(4))
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token == "<|pad|>"
    assert {0, 2} <= tok.eos_token_ids  # generation stops at <|endoftext|> and <|im_end|>
    assert tok.decode(tok.encode(MIXED)) == MIXED  # byte-level: any text, nothing unknown
    assert tok.encode("<|im_start|>user")[0] == 1  # specials are single ids
    # learned merges: common English words are single tokens
    assert len(tok.encode(" the")) == 1


def test_transformers_opens_it_with_same_ids_and_chat_template():
    ours = Tokenizer.from_dir(tokenizer_dir())
    hf = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir()))
    assert hf.encode(MIXED, add_special_tokens=False) == ours.encode(MIXED)
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    rendered = ours.apply_chat_template(messages, add_generation_prompt=False)
    assert rendered == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
    assert hf.apply_chat_template(messages, tokenize=False) == rendered
    assert hf.eos_token == "<|endoftext|>" and hf.pad_token == "<|pad|>"


def test_report_gives_chars_per_token_for_chinese_and_english(tmp_path, capsys):
    zh = tmp_path / "poems.jsonl.gz"
    with gzip.open(zh, "wt", encoding="utf-8") as f:
        for i in range(300):
            f.write(json.dumps({"title": f"春晓{i}", "paragraphs": ["春眠不觉晓，处处闻啼鸟。", "夜来风雨声，花落知多少。"]},
                               ensure_ascii=False) + "\n")
    out = tmp_path / "tok"
    assert main(["train", "tokenizer", "--input", str(shakespeare_slice()), str(zh), "--vocab-size", "600",
                 "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "tokenizer_report.json").read_text())
    assert report["vocab_size"] == 600 and report["measured_on"] == "held-out documents"
    assert report["held_out_chars"]["zh"] > 0 and report["held_out_chars"]["en"] > 0
    # a repeated poem compresses to many characters per token; English at this vocab ~2
    assert report["chars_per_token"]["zh"] > 2.0 and 1.5 < report["chars_per_token"]["en"] < 4.0
    assert f"Chinese: {report['chars_per_token']['zh']:.2f}" in printed and "English:" in printed


def test_vocab_too_small_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ValueError, match=f"at least {MIN_VOCAB_SIZE}"):
        train_bpe(["hello"], 100)
    out = tmp_path / "tok"
    assert main(["train", "tokenizer", "--input", str(shakespeare_slice()), "--vocab-size", "259",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "too small" in err and len(err.splitlines()) == 1 and not out.exists()


def test_script_detection():
    assert script_of("床前明月光，疑是地上霜。") == "zh"
    assert script_of("To be, or not to be") == "en"
    assert script_of("1234 !!") is None
