"""DPO and KTO: the losses against TRL's own trainers on the same log-probabilities, batches against
TRL's collators, log-probabilities against transformers, and tiny runs on exported feedback."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import transformers
from finetune_harness import byte_tokenizer, tiny_llama

from aigc.cli import main
from aigc.engine.offline import generate
from aigc.generation.params import SamplingParams
from aigc.models.loader import load_model
from aigc.training.lora import add_lora
from aigc.training.preference import (
    AdapterOffReference,
    Encoded,
    KTOExample,
    PairExample,
    collate_kto,
    collate_pairs,
    dpo_loss,
    encode_reply,
    kto_loss,
    sequence_logps,
)
from feedback_harness import pong_database

trl_dpo = pytest.importorskip("trl.trainer.dpo_trainer")
trl_kto = pytest.importorskip("trl.trainer.kto_trainer")
CPU = torch.device("cpu")


# ---- the losses against TRL ---------------------------------------------------------------------

class TableModel(torch.nn.Module):
    """Stands in for the policy in TRL's `_compute_loss`: token t's log-probability is a fixed
    number per token id (what a fused LM head returns: 0 where the label is -100)."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table

    def forward(self, input_ids, labels, **_):
        lp = self.table[input_ids[:, 1:]] * (labels[:, 1:] != -100)
        zeros = torch.zeros_like(lp)
        return SimpleNamespace(log_probs=lp, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())


def table_logps(table: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Our side's per-sequence sum on the same numbers."""
    return (table[ids[:, 1:]] * mask[:, 1:]).sum(1)


def _accelerator():
    same = lambda x: x  # noqa: E731  (one process: gathering changes nothing)
    return SimpleNamespace(device=CPU, gather=same, gather_for_metrics=same, unwrap_model=same)


def _trainer(cls, model, **attrs):
    """A TRL trainer with just the state its `_compute_loss` reads (its __init__ would build a whole
    Trainer: optimizer, accelerator, datasets)."""
    t = cls.__new__(cls)
    t.__dict__.update(model=model, accelerator=_accelerator(), aux_loss_enabled=False, precompute_ref_logps=True,
                      _metrics={"train": defaultdict(list), "eval": defaultdict(list)}, _total_train_tokens=0,
                      _tp_size=1, **attrs)
    return t


def _random_ids(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(1, 50) for _ in range(n)]


def test_dpo_loss_equals_trls_on_the_same_log_probabilities():
    rng = random.Random(0)
    torch.manual_seed(0)
    table = -torch.rand(50) * 3
    pairs = [PairExample(Encoded(p, _random_ids(rng, rng.randint(1, 6))), Encoded(p, _random_ids(rng, rng.randint(1, 6))))
             for p in (_random_ids(rng, rng.randint(2, 8)) for _ in range(5))]
    ours = collate_pairs(pairs, CPU)
    theirs = trl_dpo.DataCollatorForPreference(pad_token_id=0)(
        [{"prompt_ids": e.chosen.prompt, "chosen_ids": e.chosen.reply, "rejected_ids": e.rejected.reply} for e in pairs])
    assert torch.equal(ours.input_ids, theirs["input_ids"])
    assert torch.equal(ours.completion_mask.long(), theirs["completion_mask"])

    logps = table_logps(table, ours.input_ids, ours.completion_mask)
    ref = logps - torch.tensor([1.0, -1.0, 2.0, -2.0, 0.5, -1.0, 1.0, -2.0, 2.0, 0.3])  # ratios of both signs
    theirs["ref_chosen_logps"], theirs["ref_rejected_logps"] = ref[:5], ref[5:]
    beta = 0.3
    model = TableModel(table)
    trainer = _trainer(trl_dpo.DPOTrainer, model, beta=beta, ld_alpha=None, f_divergence_type="reverse_kl",
                       loss_types=["sigmoid"], loss_weights=[1.0], use_weighting=False)
    expected = trainer._compute_loss(model, theirs, return_outputs=False)

    loss, metrics = dpo_loss(logps[:5], logps[5:], ref[:5], ref[5:], beta)
    torch.testing.assert_close(loss, expected)
    logged = trainer._metrics["train"]
    for key in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
                "logps/rejected"):
        assert metrics[key] == pytest.approx(logged[key][-1], rel=1e-6, abs=1e-7), key
    assert 0 < metrics["rewards/accuracies"] < 1  # the batch is not trivial


@pytest.mark.parametrize("kl_sign", [1, -1])  # z0 from the data, and z0 clamped at 0
def test_kto_loss_and_kl_pairs_equal_trls(kl_sign):
    rng = random.Random(1)
    torch.manual_seed(1)
    table = -torch.rand(50) * 3
    labels = [True, False, True, True, False, False]
    examples = [KTOExample(Encoded(_random_ids(rng, rng.randint(2, 8)), _random_ids(rng, rng.randint(1, 6))), lab)
                for lab in labels]
    ours = collate_kto(examples, CPU, max_length=64)
    # TRL's mismatched pairs: completions rotated by one within the batch (KTOTrainer._prepare_dataset)
    completions = [e.encoded.reply for e in examples]
    kl_completions = [completions[-1]] + completions[:-1]
    theirs = trl_kto.DataCollatorForUnpairedPreference(pad_token_id=0)(
        [{"prompt_ids": e.encoded.prompt, "completion_ids": e.encoded.reply, "KL_completion_ids": k, "label": e.label}
         for e, k in zip(examples, kl_completions, strict=True)])
    for a, b in ((ours.input_ids, "input_ids"), (ours.completion_mask, "completion_mask"),
                 (ours.kl_input_ids, "KL_input_ids"), (ours.kl_completion_mask, "KL_completion_mask")):
        assert torch.equal(a.long(), theirs[b]), b
    assert torch.equal(ours.labels, theirs["label"])

    policy = table_logps(table, ours.input_ids, ours.completion_mask)
    policy_kl = table_logps(table, ours.kl_input_ids, ours.kl_completion_mask)
    ref = policy - torch.randn(6)
    ref_kl = policy_kl - kl_sign * (0.5 + torch.rand(6))  # mean log-ratio > 0, or < 0 (clamped)
    theirs["ref_logps"], theirs["ref_KL_logps"] = ref, ref_kl
    beta, wd, wu = 0.2, 1.3, 0.7
    model = TableModel(table)
    trainer = _trainer(trl_kto.KTOTrainer, model, beta=beta, calculate_KL=True, loss_type="kto",
                       desirable_weight=wd, undesirable_weight=wu)
    expected = trainer._compute_loss(model, theirs, return_outputs=False)

    loss, metrics = kto_loss(policy, ref, ours.labels, policy_kl, ref_kl, beta, wd, wu)
    torch.testing.assert_close(loss, expected)
    logged = trainer._metrics["train"]
    for key in ("kl", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"):
        assert metrics[key] == pytest.approx(logged[key][-1], rel=1e-5, abs=1e-6), key
    assert (metrics["kl"] > 0) == (kl_sign > 0)


def test_sequence_logps_equal_transformers():
    model = tiny_llama(seed=3)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=263, hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True))
    from aigc.models.hf_checkpoint import native_to_hf

    hf.load_state_dict(native_to_hf(model.config, model.state_dict()), strict=False)
    hf.eval()
    ids = torch.tensor([[5, 9, 30, 31, 32, 0, 0], [7, 8, 9, 10, 11, 12, 13]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1, 1]], dtype=torch.bool)
    with torch.no_grad():
        ours = sequence_logps(model, ids, mask)
        lp = hf(ids).logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(ours, (lp * mask[:, 1:]).sum(1), atol=1e-4, rtol=1e-4)


def test_the_reply_alone_is_scored_and_a_lora_reference_is_the_base():
    tok = byte_tokenizer()
    prompt = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "earlier"},
              {"role": "user", "content": "again"}]
    enc = encode_reply(tok, prompt, [{"role": "assistant", "content": "pong"}], max_length=1024)
    assert tok.decode(enc.reply) == "pong<|im_end|>"  # not the earlier reply, not the template's newline
    assert tok.decode(enc.prompt).endswith("again<|im_end|>\n<|im_start|>assistant\n")
    assert encode_reply(tok, prompt, [{"role": "assistant", "content": "x"}], max_length=len(enc.prompt)) is None

    model = tiny_llama(seed=4)
    batch = collate_pairs([PairExample(enc, enc)], CPU)
    ids, mask = batch.input_ids[:1], batch.completion_mask[:1]
    with torch.no_grad():
        base = sequence_logps(model, ids, mask)
    add_lora(model, model.config, 4, 8.0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # a trained adapter: the policy differs from the base
    model.train()
    with torch.no_grad():
        assert (sequence_logps(model, ids, mask) - base).abs().max() > 1e-3
        torch.testing.assert_close(AdapterOffReference(model)(ids, mask), base)
    assert model.training  # the reference pass leaves the policy's mode as it was


# ---- tiny runs on exported feedback ---------------------------------------------------------------

@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("feedback")
    url = f"sqlite:///{d}/app.db"
    pong_database(url, n=24)
    out = d / "dpo.jsonl"
    assert main(["data", "export-feedback", "--format", "dpo", "--database-url", url, str(out)]) == 0
    kto = d / "kto.jsonl"
    assert main(["data", "export-feedback", "--format", "kto", "--database-url", url, str(kto)]) == 0
    return out, kto


def _margins(model, tok, records) -> torch.Tensor:
    """log p(chosen) - log p(rejected) of each pair."""
    pairs = [PairExample(encode_reply(tok, r["prompt"], r["chosen"], 1024),
                         encode_reply(tok, r["prompt"], r["rejected"], 1024)) for r in records]
    batch = collate_pairs(pairs, CPU)
    with torch.no_grad():
        logps = sequence_logps(model, batch.input_ids, batch.completion_mask)
    return logps[: len(pairs)] - logps[len(pairs):]


def _greedy(loaded, text: str) -> str:
    prompt = loaded.tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                  tokenize=True)
    params = SamplingParams(max_tokens=6, temperature=0.0)
    return generate(loaded.model, [prompt], params, tokenizer=loaded.tokenizer)[0][0].text


def test_dpo_run_moves_the_margin_up_and_serves(base_dir, pairs_file, tmp_path, capsys):
    dpo, _ = pairs_file
    records = [json.loads(line) for line in dpo.read_text().splitlines()]
    assert len(records) == 24
    out = tmp_path / "dpo"
    assert main(["train", "dpo", "--base", str(base_dir), "--data", str(dpo), "--out", str(out), "--quiet",
                 "--device", "cpu", "--max-steps", "12", "--lr", "3e-3", "--batch-size", "4", "--beta", "0.1",
                 "--log-every", "1", "--val-fraction", "0.25"]) == 0
    assert "wrote model" in capsys.readouterr().out
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in logged if r["split"] == "train"]
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "loss"} <= set(train[-1])
    assert train[-1]["rewards/margins"] > train[0]["rewards/margins"]
    assert train[-1]["loss"] < train[0]["loss"]
    val = [r for r in logged if r["split"] == "val"]
    assert val and val[-1]["rewards/accuracies"] == 1.0

    base = load_model(str(base_dir))
    tuned = load_model(str(out))
    before, after = _margins(base.model, base.tokenizer, records), _margins(tuned.model, tuned.tokenizer, records)
    assert (after > before).all() and after.mean() > before.mean() + 1.0
    assert isinstance(_greedy(tuned, "ping 3"), str)
    results = json.loads((out / "train_results.json").read_text())
    assert results["objective"] == "dpo" and results["reference"] == "frozen copy of the base"


def test_lora_dpo_writes_an_adapter_that_loads_and_generates(base_dir, pairs_file, tmp_path):
    dpo, _ = pairs_file
    out = tmp_path / "dpo-lora"
    assert main(["train", "dpo", "--base", str(base_dir), "--data", str(dpo), "--out", str(out), "--quiet",
                 "--device", "cpu", "--lora", "--max-steps", "8", "--lr", "2e-2", "--batch-size", "4",
                 "--log-every", "1"]) == 0
    conf = json.loads((out / "adapter_config.json").read_text())
    assert conf["r"] == 16 and conf["base_model_name_or_path"] == str(base_dir)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["rewards/margins"] > logged[0]["rewards/margins"]
    tuned = load_model(str(out))  # what `aigc serve --model OUT` loads: base + merged adapter
    records = [json.loads(line) for line in dpo.read_text().splitlines()]
    base = load_model(str(base_dir))
    assert _margins(tuned.model, tuned.tokenizer, records).mean() > _margins(base.model, base.tokenizer, records).mean()
    assert isinstance(_greedy(tuned, "ping 1"), str)


def test_kto_run_logs_trls_metrics(base_dir, pairs_file, tmp_path):
    _, kto = pairs_file
    out = tmp_path / "kto"
    assert main(["train", "kto", "--base", str(base_dir), "--data", str(kto), "--out", str(out), "--quiet",
                 "--device", "cpu", "--max-steps", "10", "--lr", "3e-3", "--batch-size", "4", "--log-every", "1",
                 "--desirable-weight", "1.0", "--undesirable-weight", "1.0"]) == 0
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in logged if r["split"] == "train"]
    assert all("kl" in r for r in train)
    both = [r for r in train if "rewards/margins" in r]  # steps whose batches had 👍 and 👎 replies
    assert len(both) >= 5 and both[-1]["rewards/margins"] > both[0]["rewards/margins"]
    assert both[-1]["rewards/chosen"] > 0 > both[-1]["rewards/rejected"]
    assert load_model(str(out)).model is not None


def test_bad_preference_data_is_one_line_and_exit_2(base_dir, pairs_file, tmp_path, capsys):
    dpo, kto = pairs_file
    out = tmp_path / "x"
    assert main(["train", "kto", "--base", str(base_dir), "--data", str(dpo), "--out", str(out), "--quiet"]) == 2
    assert "no 'completion' field" in capsys.readouterr().err
    assert main(["train", "kto", "--base", str(base_dir), "--data", str(kto), "--out", str(out), "--quiet",
                 "--batch-size", "1"]) == 2
    assert "--batch-size must be at least 2" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "hi", "chosen": "a", "rejected": "b"}) + "\n")
    assert main(["train", "dpo", "--base", str(base_dir), "--data", str(bad), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "conversational format" in err[0]
    assert not out.exists()
