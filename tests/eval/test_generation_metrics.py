"""Generation metrics: Chinese-aware tokenization, ROUGE by hand, BLEU/chrF agreeing with sacrebleu."""

import pytest
import sacrebleu

from aigc.eval.generation_metrics import (
    bleu_chrf,
    distinct_n,
    generation_metrics,
    is_cjk,
    rouge,
    text_tokens,
)


def test_text_tokens_split_chinese_into_characters():
    assert text_tokens("我爱北京, Tiananmen Square!") == ["我", "爱", "北", "京", "tiananmen", "square"]
    assert text_tokens("GPT4是模型") == ["gpt4", "是", "模", "型"]
    assert is_cjk(["今天天气很好"]) and not is_cjk(["the weather is nice today"])


def test_rouge_by_hand():
    # pred: the cat sat ; ref: the cat sat down -> R1: P=1, R=3/4 ; R2: 2/2, 2/3 ; L: LCS 3
    r = rouge(["The cat sat."], ["the cat sat down"])
    assert r["rouge1"] == pytest.approx(100 * 2 * 0.75 / 1.75)
    assert r["rouge2"] == pytest.approx(100 * 2 * (2 / 3) / (5 / 3))
    assert r["rougeL"] == pytest.approx(r["rouge1"])
    # Chinese: characters are the units; order matters for ROUGE-L only.
    zh = rouge(["天气很好"], ["好很气天"])
    assert zh["rouge1"] == pytest.approx(100) and zh["rouge2"] == 0 and zh["rougeL"] == pytest.approx(25)
    assert rouge(["", "a b"], ["x", "a b"])["rouge1"] == pytest.approx(50)


def test_distinct_n():
    assert distinct_n(["a a a b"], 1) == pytest.approx(2 / 4)
    assert distinct_n(["a b", "a b"], 2) == pytest.approx(1 / 2)
    assert distinct_n(["你好你好"], 2) == pytest.approx(2 / 3)
    assert distinct_n([""], 2) == 0.0


def test_bleu_uses_zh_tokenizer_for_chinese():
    preds, refs = ["我今天很高兴。"], ["我今天非常高兴。"]
    got = bleu_chrf(preds, refs)
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, [refs], tokenize="zh").score)
    assert got["bleu"] > 0  # with the default tokenizer the whole sentence is one "word": BLEU 0
    assert sacrebleu.corpus_bleu(preds, [refs]).score == 0
    en = bleu_chrf(["the cat is on the mat"], ["the cat sat on the mat"])
    assert en["bleu"] == pytest.approx(sacrebleu.corpus_bleu(["the cat is on the mat"],
                                                             [["the cat sat on the mat"]]).score)
    assert en["chrf"] == pytest.approx(sacrebleu.corpus_chrf(["the cat is on the mat"],
                                                             [["the cat sat on the mat"]]).score)


def test_generation_metrics_by_task():
    t = generation_metrics(["the cat sat on the mat"], ["the cat sat on the mat"], "translate")
    assert t["bleu"] == pytest.approx(100) and {"chrf", "distinct_1", "distinct_2"} <= set(t)
    s = generation_metrics(["hello world"], ["hello there"], "summarize")
    assert s["rouge1"] == pytest.approx(50) and "bleu" not in s
    with pytest.raises(ValueError, match="task"):
        generation_metrics(["a"], ["a"], "poem")
    with pytest.raises(ValueError, match="references"):
        rouge(["a"], [])


def test_eval_generate_cli_on_a_tiny_model(tmp_path, capsys):
    import json

    import torch
    import transformers
    from tokenizers import Tokenizer as Backend
    from tokenizers import decoders, models, pre_tokenizers

    from aigc.cli import main
    from aigc.models.config import ModelConfig
    from aigc.models.hf_checkpoint import model_from_hf_state_dict, save_hf_dir
    from aigc.tokenizer import Tokenizer

    vocab = {"<|im_end|>": 0, **{ch: i + 1 for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}}
    backend = Backend(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = Tokenizer(backend, eos_token="<|im_end|>")
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=512, eos_token_id=0))
    save_hf_dir(model_from_hf_state_dict(ModelConfig.from_hf_dict(hf.config.to_dict()), hf.state_dict()),
                tmp_path / "m", tokenizer=tok)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"en": f"sentence {i}", "zh": f"句子{i}"}) + "\n" for i in range(3)))
    preds = tmp_path / "preds.jsonl"
    assert main(["eval", "generate", "--model", str(tmp_path / "m"), "--data", str(data), "--task", "translate",
                 "--max-tokens", "4", "--json", "--output", str(preds)]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["n"] == 3 and scores["lang"] == "zh" and {"bleu", "chrf", "distinct_1"} <= set(scores)
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert [r["reference"] for r in rows] == ["句子0", "句子1", "句子2"]
    assert main(["eval", "generate", "--model", str(tmp_path / "m"), "--data", str(data), "--task",
                 "summarize"]) == 2
    assert "--source-field" in capsys.readouterr().err
