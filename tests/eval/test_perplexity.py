"""`aigc eval perplexity`: every token scored once, exact numbers on known models, text files and data dirs."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from aigc.cli import main
from aigc.eval.perplexity import EvalTokens, evaluate_perplexity, load_eval_tokens
from aigc.models.config import ModelConfig
from aigc.models.hf_checkpoint import save_hf_dir
from aigc.models.transformer import Transformer
from aigc.training.data.prepare import prepare_data
from aigc.training.tokenizer_train import train_bpe

TEXT = ("Now is the winter of our discontent\nMade glorious summer by this sun of York;\n\n"
        "And all the clouds that lour'd upon our house\nIn the deep bosom of the ocean buried.\n") * 6


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe([TEXT, "床前明月光，疑是地上霜。"], 300)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other tenants for the cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(vocab: int, ctx: int = 32, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                      num_kv_heads=2, max_position_embeddings=ctx, tie_word_embeddings=True, eos_token_id=0)
    model = Transformer(cfg)
    model.init_weights(0.2)
    return model.eval()


def direct_nll(model, ids: torch.Tensor) -> torch.Tensor:
    """Per-target NLL of one window scored in a single forward."""
    with torch.no_grad():
        logits = model(ids[None, :-1])[0]
    return F.cross_entropy(logits, ids[1:], reduction="none")


def test_one_window_equals_a_plain_forward(tokenizer):
    model = tiny_model(tokenizer.vocab_size, ctx=64)
    ids = torch.tensor([0, *tokenizer.encode("Now is the winter of our discontent")])
    r = evaluate_perplexity(model, EvalTokens(ids.numpy(), separator=0, chars=35), block_size=64)
    nll = direct_nll(model, ids)
    assert r.tokens == len(ids) - 1
    assert r.loss == pytest.approx(nll.mean().item(), rel=1e-5)
    assert r.bits_per_char == pytest.approx(nll.sum().item() / math.log(2) / 35, rel=1e-5)
    assert r.perplexity == pytest.approx(math.exp(r.loss))


@pytest.mark.parametrize("stride", [32, 20, 7, 1])
def test_windows_score_every_token_once_with_the_context_they_had(tokenizer, stride):
    model = tiny_model(tokenizer.vocab_size, ctx=32)
    ids = torch.tensor([0, *tokenizer.encode(TEXT[:200])])
    n = len(ids) - 1
    r = evaluate_perplexity(model, EvalTokens(ids.numpy(), separator=-1, chars=200), block_size=32, stride=stride,
                            batch_size=3)
    assert r.tokens == n
    # Reference: target t is predicted from the window that first covers it.
    total, start, done = 0.0, 0, 0
    while done < n:
        length = min(32, n - start)
        nll = direct_nll(model, ids[start : start + length + 1])
        total += nll[done - start:].sum().item()
        done, start = start + length, start + stride
    assert r.loss == pytest.approx(total / n, rel=1e-5)


def test_uniform_model_gives_log_vocab_and_separators_are_not_scored(tokenizer):
    model = tiny_model(tokenizer.vocab_size)
    torch.nn.init.zeros_(model.tok_emb.weight)  # tied head: all logits 0
    ids = torch.tensor([0, 5, 6, 0, 7, 8, 9, 0, 10])
    r = evaluate_perplexity(model, EvalTokens(ids.numpy(), separator=0, chars=12), block_size=4)
    assert r.tokens == 6  # 8 targets, two are separators
    assert r.loss == pytest.approx(math.log(tokenizer.vocab_size))
    assert r.perplexity == pytest.approx(tokenizer.vocab_size, rel=1e-5)
    assert r.bits_per_char == pytest.approx(6 * math.log2(tokenizer.vocab_size) / 12)


def test_text_and_jsonl_files_become_documents(tmp_path, tokenizer):
    txt = tmp_path / "a.txt"
    txt.write_text(TEXT, encoding="utf-8")
    t = load_eval_tokens(txt, tokenizer)
    assert t.chars == len(TEXT) and t.ids[0] == 0 and tokenizer.decode(t.ids[1:].tolist()) == TEXT
    jl = tmp_path / "b.jsonl"
    jl.write_text('{"text": "ab"}\n{"text": "cd"}\n', encoding="utf-8")
    t = load_eval_tokens(jl, tokenizer)
    assert t.chars == 4 and t.ids.tolist() == [0, *tokenizer.encode("ab"), 0, *tokenizer.encode("cd")]
    assert load_eval_tokens(txt, tokenizer, max_chars=10).chars == 10


def test_cli_on_text_file_and_data_dir(tmp_path, tokenizer, capsys):
    model_dir = tmp_path / "model"
    save_hf_dir(tiny_model(tokenizer.vocab_size, ctx=64), model_dir, tokenizer=tokenizer)
    txt = tmp_path / "a.txt"
    txt.write_text(TEXT, encoding="utf-8")
    assert main(["eval", "perplexity", "--model", str(model_dir), "--data", str(txt), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["chars"] == len(TEXT) and r["tokens"] == len(tokenizer.encode(TEXT))
    assert r["perplexity"] == pytest.approx(math.exp(r["loss"]))

    data = tmp_path / "data"
    prepare_data([txt], data, tokenizer, val_fraction=0.5, seed=0, show_progress=False)
    assert main(["eval", "perplexity", "--model", str(model_dir), "--data", str(data)]) == 0
    assert "bits/char" in capsys.readouterr().out

    other = train_bpe([TEXT], 280)
    other_dir = tmp_path / "other"
    save_hf_dir(tiny_model(other.vocab_size), other_dir, tokenizer=other)
    assert main(["eval", "perplexity", "--model", str(other_dir), "--data", str(data)]) == 2
    assert "different tokenizer" in capsys.readouterr().err
    assert main(["eval", "perplexity", "--model", str(model_dir), "--data", str(tmp_path / "none.txt")]) == 2
    assert "data not found" in capsys.readouterr().err
