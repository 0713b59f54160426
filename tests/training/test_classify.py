"""`aigc train classify` / `aigc classify` / `aigc eval classify` on a tiny model, and the HF layout."""

import json
import random

import peft
import pytest
import torch
import transformers
from finetune_harness import byte_tokenizer, tiny_llama

from aigc.apps.classify import Classifier
from aigc.cli import main
from aigc.models.classifier import SequenceClassifier, encode_texts, predict_probs
from aigc.training.classify import load_labeled, stratified_split


@pytest.fixture(scope="module")
def labeled_file(tmp_path_factory):
    """Random words; the label is given by the last word (pooling reads the last token): learnable fast."""
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("data") / "labeled.jsonl.gz"
    import gzip

    with gzip.open(path, "wt") as f:
        for i in range(240):
            label = ["neg", "pos", "pos"][i % 3]  # 2:1, so the majority baseline is 2/3
            words = " ".join("".join(rng.choice("abcdef") for _ in range(3)) for _ in range(rng.randint(1, 4)))
            f.write(json.dumps({"text": f"{words} {'ok' if label == 'pos' else 'no'}", "label": label}) + "\n")
    return path


def test_saved_classifier_opens_in_transformers_with_same_probabilities(tmp_path):
    tok = byte_tokenizer()
    clf = SequenceClassifier(tiny_llama(), ["neg", "pos", "neutral"], pad_token_id=tok.pad_token_id)
    clf.save_pretrained(tmp_path, tokenizer=tok)
    texts = ["hello there, friend", "no", "a somewhat longer sentence to pad the others"]
    ours = predict_probs(SequenceClassifier.from_pretrained(tmp_path), encode_texts(tok, texts, 64))

    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert hf.config.id2label == {0: "neg", 1: "pos", 2: "neutral"}
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    hf_tok.padding_side = "right"
    enc = hf_tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        theirs = hf(**enc).logits.softmax(-1)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-4)
    assert not (ours[0] - ours[1]).abs().max() < 1e-6  # different texts, different outputs


def test_stratified_split_keeps_proportions():
    labels = ["a"] * 90 + ["b"] * 10
    train, val = stratified_split(labels, 0.2, seed=1)
    assert sorted(train + val) == list(range(100))
    assert [labels[i] for i in val].count("b") == 2 and len(val) == 20
    assert stratified_split(labels, 0.2, seed=1) == (train, val)
    capped, _ = stratified_split(labels, 0.2, seed=1, max_train=40)
    assert len(capped) == 40 and [labels[i] for i in capped].count("b") == 4


def test_train_classify_cli_beats_majority_and_serves(base_dir, labeled_file, tmp_path, capsys):
    out = tmp_path / "clf"
    code = main(["train", "classify", "--base", str(base_dir), "--data", str(labeled_file), "--out", str(out),
                 "--quiet", "--device", "cpu", "--epochs", "6", "--lr", "3e-3", "--val-fraction", "0.25",
                 "--max-length", "32"])
    printed = capsys.readouterr().out
    assert code == 0 and "confusion matrix" in printed and "majority baseline (pos)=0.6667" in printed
    results = json.loads((out / "eval_results.json").read_text())
    val = results["validation"]
    assert val["n"] == 60 and val["accuracy"] > val["majority_accuracy"] + 0.15
    assert set(val["per_class"]) == {"neg", "pos"}

    assert main(["classify", "--model", str(out), "abc dea ok"]) == 0
    label, probs = capsys.readouterr().out.strip().split("\t")
    assert label == "pos" and probs.startswith("neg=")
    clf = Classifier.load(out)
    got = clf.classify(["fed no", "cab ok"])
    assert [g["label"] for g in got] == ["neg", "pos"]
    assert sum(got[0]["probabilities"].values()) == pytest.approx(1, abs=1e-4)

    assert main(["eval", "classify", "--model", str(out), "--data", str(labeled_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] > 0.8


def test_lora_classifier_adapter_loads_in_peft(base_dir, labeled_file, tmp_path):
    out = tmp_path / "clf"
    assert main(["train", "classify", "--base", str(base_dir), "--data", str(labeled_file), "--out", str(out),
                 "--quiet", "--device", "cpu", "--max-steps", "5", "--lora-r", "4", "--lr", "1e-2"]) == 0
    assert (out / "adapter" / "adapter_config.json").exists()
    merged = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    base = transformers.AutoModelForSequenceClassification.from_pretrained(
        base_dir, num_labels=2, pad_token_id=0).eval()
    with_adapter = peft.PeftModel.from_pretrained(base, out / "adapter").eval()
    ids = torch.tensor([[20, 30, 40, 50, 60], [70, 80, 90, 100, 110]])
    with torch.no_grad():
        torch.testing.assert_close(with_adapter(ids).logits, merged(ids).logits, atol=1e-4, rtol=1e-4)


def test_bad_input(base_dir, labeled_file, tmp_path, capsys):
    one = tmp_path / "one.jsonl"
    one.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "x"}\n')
    cases = [
        (["--data", str(labeled_file), "--text-field", "sentence"], "no 'sentence' field"),
        (["--data", str(one)], "only one label"),
        (["--data", str(tmp_path / "none.jsonl")], "data file not found"),
    ]
    for extra, message in cases:
        code = main(["train", "classify", "--base", str(base_dir), "--out", str(tmp_path / "o"), "--quiet", *extra])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()
    assert main(["classify", "--model", str(base_dir), "hi"]) == 2
    assert "is not a classifier" in capsys.readouterr().err
    texts, labels = load_labeled(labeled_file)
    assert len(texts) == 240 and set(labels) == {"neg", "pos"}


def test_head_only_keeps_the_decoder_and_learns(base_dir, labeled_file, tmp_path):
    out = tmp_path / "probe"
    assert main(["train", "classify", "--base", str(base_dir), "--data", str(labeled_file), "--out", str(out),
                 "--quiet", "--device", "cpu", "--head-only", "--epochs", "20", "--lr", "1e-2"]) == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["head_only"] and results["trainable_params"] == 2 * 48
    assert results["validation"]["accuracy"] > results["validation"]["majority_accuracy"] + 0.1
    base = transformers.AutoModelForCausalLM.from_pretrained(base_dir).model.state_dict()
    probe = transformers.AutoModelForSequenceClassification.from_pretrained(out).model.state_dict()
    assert all(torch.equal(base[k], probe[k]) for k in base)  # the decoder is untouched


def test_classifier_api_rejects_bad_requests(base_dir, tmp_path):
    tok = byte_tokenizer()
    SequenceClassifier(tiny_llama(), ["a", "b"], pad_token_id=0).save_pretrained(tmp_path, tokenizer=tok)
    clf = Classifier.load(tmp_path)
    assert clf.labels == ["a", "b"] and clf.classify([]) == []
    assert len(clf.classify("one text")) == 1
    with pytest.raises(ValueError, match="empty"):
        clf.classify(["fine", "  "])
    with pytest.raises(ValueError, match="at most"):
        clf.classify(["x"] * 1000)
    with pytest.raises(FileNotFoundError):
        Classifier.load(tmp_path / "nope")


SENTIMENT = "../shared/data/sentiment/en-sentence-polarity.jsonl.gz"


@pytest.mark.slow
def test_smollm2_on_a_slice_of_real_sentiment_data_beats_majority(tmp_path):
    from pathlib import Path

    data = Path(__file__).resolve().parents[2] / SENTIMENT
    if not data.exists():
        pytest.skip(f"shared data set not found at {data}")
    out = tmp_path / "clf"
    assert main(["train", "classify", "--base", "smollm2-135m-instruct", "--data", str(data), "--out", str(out),
                 "--quiet", "--device", "cpu", "--head-only", "--max-train", "160", "--max-val", "80",
                 "--max-length", "32", "--epochs", "20"]) == 0
    val = json.loads((out / "eval_results.json").read_text())["validation"]
    assert val["n"] == 80 and val["majority_accuracy"] == 0.5
    assert val["accuracy"] >= 0.6, val  # ~0.7 seen; a frozen SmolLM2 already separates polarity


def test_multi_label_classify_learns_each_label_and_opens_in_transformers(base_dir, tmp_path, capsys):
    """Labels as lists: each is its own yes/no (binary cross-entropy); [] means none applies."""
    rng = random.Random(1)
    path = tmp_path / "multi.jsonl"
    with open(path, "w") as f:
        for i in range(300):
            labels = [lab for lab, word in (("x", "xx"), ("y", "yy")) if (i >> ("xy".index(lab))) & 1]
            words = " ".join("".join(rng.choice("abcdef") for _ in range(3)) for _ in range(rng.randint(1, 3)))
            marks = " ".join({"x": "xx", "y": "yy"}[lab] for lab in labels) or "zz"
            f.write(json.dumps({"text": f"{words} {marks}", "labels": labels}) + "\n")
    out = tmp_path / "multi"
    code = main(["train", "classify", "--base", str(base_dir), "--data", str(path), "--out", str(out), "--quiet",
                 "--device", "cpu", "--epochs", "8", "--lr", "3e-3", "--val-fraction", "0.2", "--max-length", "32",
                 "--label-field", "labels"])
    printed = capsys.readouterr().out
    assert code == 0 and "micro-F1" in printed
    val = json.loads((out / "eval_results.json").read_text())["validation"]
    assert val["multi_label"] and set(val["per_class"]) == {"x", "y"} and val["micro_f1"] > 0.8, val
    clf = SequenceClassifier.from_pretrained(out)
    assert clf.multi_label
    tok = transformers.AutoTokenizer.from_pretrained(out)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert hf.config.problem_type == "multi_label_classification"
    texts = ["abc xx yy", "fed zz"]
    from aigc.tokenizer import Tokenizer

    ours = predict_probs(clf, encode_texts(Tokenizer.from_dir(out), texts, 32))
    tok.padding_side = "right"
    with torch.no_grad():
        theirs = hf(**tok(texts, padding=True, return_tensors="pt")).logits.sigmoid()
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="multi-label"):
        bad = tmp_path / "mixed.jsonl"
        bad.write_text(json.dumps({"text": "a", "labels": ["x"]}) + "\n" + json.dumps({"text": "b", "labels": "y"}) + "\n")
        load_labeled(bad, label_field="labels")
