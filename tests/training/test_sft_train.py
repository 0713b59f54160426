"""`aigc train sft` end to end on a tiny model: learning, saved formats, LoRA + merge, bad input."""

import json

import peft
import pytest
import torch
import transformers
from finetune_harness import byte_tokenizer, tiny_llama

from aigc.cli import main
from aigc.models.hf_checkpoint import load_hf_dir, save_hf_dir

IDS = torch.tensor([[10, 40, 50, 60, 70, 80, 90, 100]])


@pytest.fixture(scope="module")
def chat_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "chat.jsonl"
    with open(path, "w") as f:
        for i in range(24):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"ping {i}"},
                                             {"role": "assistant", "content": "pong"}]}) + "\n")
    return path


def sft(base, data, out, *extra):
    return main(["train", "sft", "--base", str(base), "--data", str(data), "--out", str(out), "--quiet",
                 "--device", "cpu", "--batch-size", "4", *extra])


def test_full_finetune_learns_and_saves_a_transformers_model(base_dir, chat_file, tmp_path, capsys):
    out = tmp_path / "sft"
    assert sft(base_dir, chat_file, out, "--max-steps", "40", "--lr", "3e-3", "--val-fraction", "0.2") == 0
    assert "wrote model" in capsys.readouterr().out
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["split"] == "train"]
    assert losses[-1] < losses[0] / 3  # "pong<|im_end|>" is easy to learn
    results = json.loads((out / "train_results.json").read_text())
    assert results["val_examples"] == 4 and results["val_loss"] < 1.0
    assert [r["split"] for r in records].count("val") == 1
    assert not [p.name for p in tmp_path.iterdir() if p.name != "sft"]  # no staging directory left
    assert (out / "loss.png").is_file()

    ours = load_hf_dir(out)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        torch.testing.assert_close(hf(IDS).logits, ours(IDS), atol=1e-4, rtol=1e-4)
    assert transformers.AutoTokenizer.from_pretrained(out).chat_template == byte_tokenizer().chat_template


def test_lora_adapter_peft_and_merge_agree(base_dir, chat_file, tmp_path):
    adapter, merged = tmp_path / "adapter", tmp_path / "merged"
    assert sft(base_dir, chat_file, adapter, "--lora-r", "4", "--lora-alpha", "8", "--max-steps", "6",
               "--lr", "1e-2", "--lora-targets", "q_proj,v_proj,down_proj", "--freeze-layers", "1") == 0
    conf = json.loads((adapter / "adapter_config.json").read_text())
    assert conf["base_model_name_or_path"] == str(base_dir)
    assert sorted(conf["target_modules"]) == ["down_proj", "q_proj", "v_proj"]
    assert main(["merge", "--adapter", str(adapter), "--out", str(merged)]) == 0

    hf = transformers.AutoModelForCausalLM.from_pretrained(base_dir)
    with torch.no_grad():
        base_logits = hf(IDS).logits
        with_adapter = peft.PeftModel.from_pretrained(hf, adapter).eval()(IDS).logits
        merged_logits = transformers.AutoModelForCausalLM.from_pretrained(merged)(IDS).logits
    assert (with_adapter - base_logits).abs().max() > 1e-3  # training changed something
    torch.testing.assert_close(merged_logits, with_adapter, atol=1e-4, rtol=1e-4)
    # --freeze-layers 1: the first block's adapter stayed at its zero init.
    from safetensors.torch import load_file
    tensors = load_file(adapter / "adapter_model.safetensors")
    assert tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"].abs().max() == 0
    assert tensors["base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"].abs().max() > 0


def test_bad_input_gives_one_line_and_writes_nothing(base_dir, chat_file, tmp_path, capsys):
    out = tmp_path / "out"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(json.dumps({"conversation": []}) + "\n")
    cases = [
        ((tmp_path / "missing.jsonl",), "data file not found"),
        ((empty,), "no records"),
        ((wrong,), "no 'messages' field"),
        ((chat_file, "--lora-targets", "qkv", "--lora-r", "2"), "unknown LoRA target"),
        ((chat_file, "--freeze-layers", "5"), "--freeze-layers must be between 0 and 2"),
        ((chat_file, "--max-steps", "2", "--lr", "1e12"), "loss became"),  # fails mid-training
    ]
    for (data, *extra), message in cases:
        code = sft(base_dir, data, out, *extra)
        err = capsys.readouterr().err
        assert code == 2 and message in err, err
        assert len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


def test_vocab_too_small_and_existing_output(chat_file, tmp_path, capsys):
    small = tmp_path / "small"
    save_hf_dir(tiny_llama(vocab=100), small, tokenizer=byte_tokenizer())  # tokenizer ids go up to 262
    assert sft(small, chat_file, tmp_path / "o") == 2
    assert "vocab too small" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    assert sft(small, chat_file, busy) == 2
    assert "pass --force" in capsys.readouterr().err and (busy / "keep.txt").exists()


def test_run_that_does_not_fit_in_memory_is_refused(base_dir, chat_file, tmp_path, capsys, monkeypatch):
    import aigc.training.loop as loop

    monkeypatch.setattr(loop, "available_memory_bytes", lambda device: 1 << 20)  # pretend 1 MiB is free
    assert sft(base_dir, chat_file, tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "only 0.0 GiB is free" in err and "--batch-size" in err
    assert not (tmp_path / "o").exists()
