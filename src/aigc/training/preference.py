"""Preference fine-tuning on rated replies: DPO (pairs) and KTO (single 👍/👎 replies).

Data is what `aigc data export-feedback` writes, TRL's conversational format:
DPO `{"prompt": [messages], "chosen": [assistant], "rejected": [assistant]}`,
KTO `{"prompt": [messages], "completion": [assistant], "label": bool}`.
Each (prompt, reply) is rendered with the base model's chat template exactly as SFT renders it
(`sft.build_example`), and only the reply's tokens (content and end-of-turn token) are scored: the
prompt, earlier replies in it included, is masked.

The objectives, as in the papers and as TRL computes them (tests/training/test_preference.py checks
both against TRL's own trainers on the same log-probabilities). With r = beta * (log pi(y|x) -
log pi_ref(y|x)) the implicit reward of a reply (sum of its tokens' log-probabilities):
- DPO (Rafailov et al. 2023, sigmoid loss): -log sigmoid(r_chosen - r_rejected), batch mean.
- KTO (Ethayarajh et al. 2024): a 👍 reply costs lambda_D * (1 - sigmoid(r - z0)), a 👎 one
  lambda_U * (1 - sigmoid(z0 - r)); z0 = max(0, mean(beta-free log-ratio of mismatched pairs)), the
  KL reference point, estimated as TRL does: each prompt paired with the previous example's reply in
  the batch (so a batch needs two examples at least), with no gradient through it.

The reference model is frozen: a copy of the base for a full fine-tune; with LoRA the same network
with its adapters switched off (no second copy of the weights). Everything else -- set-up, the
optimisation loop (`loop.train_loop`), progress with ETA, metrics.jsonl, TensorBoard, the
output directory -- is SFT's; metrics.jsonl gets TRL's names (rewards/chosen, rewards/rejected,
rewards/margins, rewards/accuracies, logps/..., kl). The output is a Hugging Face directory or a
PEFT adapter that `aigc serve --model OUT` serves as it is.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aigc.chat_template import TemplateError
from aigc.tokenizer import Tokenizer
from aigc.training.distributed import DistEnv
from aigc.training.finetune import count_parameters, fit, read_jsonl, resolve_loop
from aigc.training.finetune_config import PreferenceConfig
from aigc.training.loop import LoopResult, MetricMeans, StreamSource, check_memory, runtime
from aigc.training.sft import (
    IGNORE,
    build_example,
    check_config,
    length_batches,
    load_base,
    make_trainable,
    save_output,
    split_validation,
)

_FIELDS = {"dpo": ("prompt", "chosen", "rejected"), "kto": ("prompt", "completion", "label")}


# ---- the losses (on per-sequence log-probabilities) ----------------------------------------------

def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, float]]:
    """DPO's sigmoid loss (batch mean) and TRL's metrics, from each reply's summed log-probability."""
    chosen_logratios = policy_chosen - ref_chosen
    rejected_logratios = policy_rejected - ref_rejected
    loss = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios)).mean()
    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    metrics = {
        "rewards/chosen": chosen_rewards.mean().item(),
        "rewards/rejected": rejected_rewards.mean().item(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
        "logps/chosen": policy_chosen.detach().mean().item(),
        "logps/rejected": policy_rejected.detach().mean().item(),
    }
    return loss, metrics


def kto_loss(policy: torch.Tensor, ref: torch.Tensor, labels: torch.Tensor, policy_kl: torch.Tensor,
             ref_kl: torch.Tensor, beta: float, desirable_weight: float = 1.0, undesirable_weight: float = 1.0
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """KTO's loss (mean over the batch's replies) and TRL's metrics.

    policy / ref: each reply's log-probability; labels: True for 👍; policy_kl / ref_kl: the
    log-probabilities of the mismatched (prompt, other reply) sequences behind the KL estimate.
    """
    labels = labels.bool()
    kl = (policy_kl - ref_kl).mean().detach().clamp(min=0)  # z0: a baseline, not trained through
    logratios = policy - ref
    chosen, rejected = logratios[labels], logratios[~labels]
    losses = torch.cat((desirable_weight * (1 - torch.sigmoid(beta * (chosen - kl))),
                        undesirable_weight * (1 - torch.sigmoid(beta * (kl - rejected)))))
    metrics = {"kl": kl.item()}
    if chosen.numel():
        metrics["rewards/chosen"] = (beta * chosen.detach()).mean().item()
        metrics["logps/chosen"] = policy[labels].detach().mean().item()
    if rejected.numel():
        metrics["rewards/rejected"] = (beta * rejected.detach()).mean().item()
        metrics["logps/rejected"] = policy[~labels].detach().mean().item()
    if chosen.numel() and rejected.numel():
        metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
    return losses.mean(), metrics


def sequence_logps(model: nn.Module, input_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Sum of log p(token | earlier tokens) over each row's completion tokens: [N].

    The LM head runs only on the positions that predict a completion token (saves the big matmul).
    """
    h = model.hidden_states(input_ids)
    target = input_ids[:, 1:]
    keep = completion_mask[:, 1:]
    logits = model.lm_head(h[:, :-1][keep]).float()
    cap = model.config.final_softcap
    if cap:
        logits = torch.tanh(logits / cap) * cap
    token_logps = logits.log_softmax(-1).gather(-1, target[keep].unsqueeze(-1)).squeeze(-1)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device).unsqueeze(1).expand_as(keep)[keep]
    return torch.zeros(input_ids.shape[0], device=input_ids.device, dtype=token_logps.dtype).index_add(
        0, rows, token_logps)


# ---- data ---------------------------------------------------------------------------------------

def _messages(value: Any, where: str, *, reply: bool) -> list[dict[str, str]]:
    ok = (isinstance(value, list) and value
          and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                  for m in value))
    if not ok:
        raise ValueError(f"{where} must be a non-empty list of {{role, content}} messages (TRL's "
                         "conversational format, as `aigc data export-feedback` writes)")
    if reply and (len(value) != 1 or value[0]["role"] != "assistant"):
        raise ValueError(f"{where} must be a list holding one assistant message")
    if not reply and value[-1]["role"] == "assistant":
        raise ValueError(f"{where} ends with an assistant message; the reply belongs in its own field")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def load_preference_records(path: str | Path, objective: str) -> list[dict[str, Any]]:
    """DPO or KTO records from a .jsonl(.gz) file, checked field by field."""
    fields = _FIELDS[objective]
    out = []
    for n, record in read_jsonl(path):
        where = f"{path}:{n}"
        missing = [f for f in fields if f not in record]
        if missing:
            raise ValueError(f"{where}: no {missing[0]!r} field; {objective} records have "
                             f"{', '.join(fields)} (the record has: {', '.join(record) or 'nothing'})")
        r = {"prompt": _messages(record["prompt"], f"{where}: 'prompt'", reply=False)}
        for name in fields[1:]:
            if name == "label":
                if not isinstance(record["label"], bool):
                    raise ValueError(f"{where}: 'label' must be true (👍) or false (👎)")
                r["label"] = record["label"]
            else:
                r[name] = _messages(record[name], f"{where}: {name!r}", reply=True)
        out.append(r)
    if not out:
        raise ValueError(f"{path}: no records")
    return out


@dataclass
class Encoded:
    """A (prompt, reply) as token ids: the prompt (its template text up to the reply) and the reply
    (content and end-of-turn token)."""

    prompt: list[int]
    reply: list[int]


def encode_reply(tokenizer: Tokenizer, prompt: list[dict[str, str]], reply: list[dict[str, str]],
                 max_length: int) -> Encoded | None:
    """Rendered as SFT renders the conversation; None when the prompt alone fills `max_length`
    (nothing of the reply would be left to score). A longer reply is cut at `max_length`."""
    ex = build_example(tokenizer, prompt + reply, first_trained=len(prompt))
    scored = [i for i, t in enumerate(ex.labels) if t != IGNORE]
    if not scored:
        raise TemplateError("the chat template renders the reply as nothing")
    start = scored[0]
    if start >= max_length:
        return None
    return Encoded(ex.input_ids[:start], ex.input_ids[start : min(scored[-1] + 1, max_length)])


@dataclass
class PairExample:
    chosen: Encoded
    rejected: Encoded

    @property
    def length(self) -> int:
        return max(len(e.prompt) + len(e.reply) for e in (self.chosen, self.rejected))


@dataclass
class KTOExample:
    encoded: Encoded
    label: bool

    @property
    def length(self) -> int:
        return len(self.encoded.prompt) + len(self.encoded.reply)


def encode_records(tokenizer: Tokenizer, records: list[dict[str, Any]], objective: str, max_length: int,
                   vocab_size: int) -> tuple[list[PairExample] | list[KTOExample], int]:
    """(examples, number dropped because the prompt alone fills --max-length)."""
    examples: list[Any] = []
    dropped = 0
    for i, r in enumerate(records):
        try:
            if objective == "dpo":
                chosen = encode_reply(tokenizer, r["prompt"], r["chosen"], max_length)
                rejected = encode_reply(tokenizer, r["prompt"], r["rejected"], max_length)
                ex: Any = PairExample(chosen, rejected) if chosen and rejected else None
                ids = (chosen.prompt + chosen.reply + rejected.reply) if ex else []
            else:
                enc = encode_reply(tokenizer, r["prompt"], r["completion"], max_length)
                ex = KTOExample(enc, r["label"]) if enc else None
                ids = (enc.prompt + enc.reply) if enc else []
        except TemplateError as e:
            raise ValueError(f"record {i + 1}: {e}") from None
        if ex is None:
            dropped += 1
            continue
        if max(ids) >= vocab_size:
            raise ValueError(f"record {i + 1}: token id {max(ids)} is outside the model's vocabulary of "
                             f"{vocab_size}; the tokenizer does not belong to this model (vocab too small)")
        examples.append(ex)
    if not examples:
        raise ValueError(f"no usable examples: all {len(records)} prompts fill --max-length {max_length}")
    return examples, dropped


# ---- batches ------------------------------------------------------------------------------------

def _pad(seqs: list[tuple[list[int], list[int]]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids [N, T] and the reply mask [N, T] of (prompt, reply) id lists. A causal mask
    keeps real tokens from attending to the padding, so no attention mask is needed."""
    width = max(len(p) + len(r) for p, r in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.bool)
    for i, (p, r) in enumerate(seqs):
        ids[i, : len(p) + len(r)] = torch.tensor(p + r)
        mask[i, len(p) : len(p) + len(r)] = True
    return ids.to(device), mask.to(device)


@dataclass
class PairBatch:
    input_ids: torch.Tensor  # [2B, T]: the chosen replies, then the rejected ones (one forward)
    completion_mask: torch.Tensor
    num_items: int


@dataclass
class KTOBatch:
    input_ids: torch.Tensor  # [B, T]
    completion_mask: torch.Tensor
    labels: torch.Tensor  # [B] bool
    kl_input_ids: torch.Tensor  # [B, T']: prompt i with the reply of example i - 1
    kl_completion_mask: torch.Tensor
    num_items: int


def collate_pairs(examples: list[PairExample], device: torch.device) -> PairBatch:
    seqs = [(e.chosen.prompt, e.chosen.reply) for e in examples] + [(e.rejected.prompt, e.rejected.reply)
                                                                     for e in examples]
    ids, mask = _pad(seqs, device)
    return PairBatch(ids, mask, len(examples))


def collate_kto(examples: list[KTOExample], device: torch.device, max_length: int) -> KTOBatch:
    ids, mask = _pad([(e.encoded.prompt, e.encoded.reply) for e in examples], device)
    # TRL's mismatched pairs: (x_1, y_n), (x_2, y_1), ..., (x_n, y_{n-1}): the same replies as the
    # batch's own, each under another prompt.
    shifted = [examples[-1]] + examples[:-1]
    kl_seqs = [(e.encoded.prompt, o.encoded.reply[: max(0, max_length - len(e.encoded.prompt))])
               for e, o in zip(examples, shifted, strict=True)]
    kl_ids, kl_mask = _pad(kl_seqs, device)
    labels = torch.tensor([e.label for e in examples], dtype=torch.bool, device=device)
    return KTOBatch(ids, mask, labels, kl_ids, kl_mask, len(examples))


# ---- reference model and objectives ---------------------------------------------------------------

class FrozenReference:
    """The base as it was before training (full fine-tuning): a frozen copy, in eval mode."""

    def __init__(self, model: nn.Module):
        self.model = copy.deepcopy(model).requires_grad_(False).eval()

    @property
    def nbytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in {id(p): p for p in self.model.parameters()}.values())

    @torch.no_grad()
    def __call__(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return sequence_logps(self.model, ids, mask)


class AdapterOffReference:
    """A LoRA run's reference: the trained network itself with its adapters switched off (PEFT's
    `disable_adapter`), in eval mode -- no second copy of the weights."""

    def __init__(self, model: nn.Module):
        self.model = model

    @torch.no_grad()
    def __call__(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        from aigc.training.lora import adapters_disabled

        was_training = self.model.training
        self.model.eval()  # no dropout: the reference is a fixed function
        try:
            with adapters_disabled(self.model):
                return sequence_logps(self.model, ids, mask)
        finally:
            self.model.train(was_training)


Reference = FrozenReference | AdapterOffReference


@dataclass
class DPOObjective:
    reference: Reference
    beta: float = 0.1

    def __call__(self, model: nn.Module, batch: PairBatch) -> tuple[torch.Tensor, dict[str, float]]:
        logps = sequence_logps(model, batch.input_ids, batch.completion_mask)
        ref = self.reference(batch.input_ids, batch.completion_mask)
        b = batch.num_items
        return dpo_loss(logps[:b], logps[b:], ref[:b], ref[b:], self.beta)


@dataclass
class KTOObjective:
    reference: Reference
    beta: float = 0.1
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0

    def __call__(self, model: nn.Module, batch: KTOBatch) -> tuple[torch.Tensor, dict[str, float]]:
        logps = sequence_logps(model, batch.input_ids, batch.completion_mask)
        with torch.no_grad():  # the KL estimate is a baseline: no gradient through it (as TRL)
            policy_kl = sequence_logps(model, batch.kl_input_ids, batch.kl_completion_mask)
        ref = self.reference(batch.input_ids, batch.completion_mask)
        ref_kl = self.reference(batch.kl_input_ids, batch.kl_completion_mask)
        return kto_loss(logps, ref, batch.labels, policy_kl, ref_kl, self.beta, self.desirable_weight,
                        self.undesirable_weight)


@torch.no_grad()
def evaluate_objective(objective: Callable, model: nn.Module, batches: list[Any], device: torch.device,
                       amp: torch.dtype | None) -> dict[str, float]:
    """Mean loss and metrics over the validation batches."""
    model.eval()
    means = MetricMeans()
    for batch in batches:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss, metrics = objective(model, batch)
        means.add({"loss": loss.item(), **metrics})
    return means.means()


def kto_weight_advice(examples: list[KTOExample], desirable: float, undesirable: float) -> str | None:
    """The KTO paper's Eq. (8) check TRL makes: with unbalanced 👍/👎 counts, one weight should make
    lambda_D * n_D / (lambda_U * n_U) fall in [1, 4/3]."""
    n_d = max(sum(e.label for e in examples), 1)
    n_u = max(len(examples) - n_d, 1)
    if n_d == n_u:
        return None
    d_lo, d_hi = round(n_u * undesirable / n_d, 2), round(n_u * undesirable / n_d * 1.33, 2)
    u_lo, u_hi = round(n_d * desirable / n_u / 1.33, 2), round(n_d * desirable / n_u, 2)
    if d_lo <= desirable <= d_hi or u_lo <= undesirable <= u_hi:
        return None
    return (f"{n_d} 👍 vs {n_u} 👎: the KTO paper suggests --desirable-weight in [{d_lo}, {d_hi}] or "
            f"--undesirable-weight in [{u_lo}, {u_hi}] (not both)")


# ---- training -----------------------------------------------------------------------------------

def train_preference(cfg: PreferenceConfig, quiet: bool = False, env: DistEnv | None = None) -> dict[str, Any]:
    """Fine-tune with DPO or KTO and write `cfg.out`; returns a summary."""
    save_dtype = check_config(cfg)
    records = load_preference_records(cfg.data, cfg.objective)
    with runtime(cfg, env) as rt:
        device = rt.device
        loaded = load_base(cfg)
        model, tok = loaded.model, loaded.tokenizer
        max_length = min(cfg.max_length, model.config.context_length)
        examples, dropped = encode_records(tok, records, cfg.objective, max_length, model.config.vocab_size)
        train, val = split_validation(examples, cfg)

        # A full run's reference is the base as loaded, copied before any gradient exists.
        frozen = FrozenReference(model) if not cfg.lora_r else None
        targets = make_trainable(model, cfg, device)
        reference: Reference = AdapterOffReference(model) if frozen is None else frozen
        if frozen is not None:
            frozen.model.to(device)
        trainable, total = count_parameters(model)
        rows = 2 if cfg.objective == "dpo" else 1  # DPO scores the chosen and the rejected reply
        longest = max(e.length for e in train)
        check_memory(model, device, rows * cfg.batch_size * longest, logits_width=model.config.vocab_size,
                     autocast_bf16=rt.amp is not None, processes=rt.env.local_world_size,
                     extra_bytes=frozen.nbytes if frozen is not None else 0)

        loop = resolve_loop(cfg, len(train), 1e-5 if cfg.lora_r else 1e-6, rt.env, cfg.epochs)

        def collate(b: list) -> Any:
            return collate_pairs(b, device) if cfg.objective == "dpo" else collate_kto(b, device, max_length)

        batches = StreamSource(length_batches(train, cfg.batch_size, cfg.seed, length=lambda e: e.length), collate)
        val_batches = [collate(val[i : i + cfg.batch_size]) for i in range(0, len(val), cfg.batch_size)]
        if cfg.objective == "kto":
            val_batches = [b for b in val_batches if b.num_items > 1]  # one example has no other reply
        objective: Any = (DPOObjective(reference, cfg.beta) if cfg.objective == "dpo"
                          else KTOObjective(reference, cfg.beta, cfg.desirable_weight, cfg.undesirable_weight))
        what = "pairs" if cfg.objective == "dpo" else "rated replies"
        summary: dict[str, Any] = {
            "base": cfg.base, "objective": cfg.objective, "beta": cfg.beta, "examples": len(train),
            "val_examples": len(val), "dropped": dropped, "steps": loop.max_steps, "trainable_params": trainable,
            "total_params": total, "lora": bool(cfg.lora_r), "device": str(device), "processes": rt.env.world_size,
            "reference": "base with the adapters off" if cfg.lora_r else "frozen copy of the base",
            "autocast": rt.autocast_name, "lr": loop.lr,
        }
        header = (f"{cfg.objective.upper()} {cfg.base}: {len(train)} {what} ({dropped} dropped), beta {cfg.beta}, "
                  f"{loop.max_steps} steps, {trainable / 1e6:.2f}M of {total / 1e6:.2f}M parameters trained on "
                  f"{device} ({rt.autocast_name}, {rt.env.world_size} process(es))")
        if cfg.objective == "kto":
            summary.update(desirable=sum(e.label for e in examples), undesirable=sum(not e.label for e in examples))
            advice = kto_weight_advice(examples, cfg.desirable_weight, cfg.undesirable_weight)
            header += f"\n{advice}" if advice else ""
        bar = ("rewards/margins", "rewards/accuracies") if cfg.objective == "dpo" else ("rewards/margins", "kl")

        def evaluate() -> dict[str, float]:
            return evaluate_objective(objective, model, val_batches, device, rt.amp)

        def write(tmp: Path, result: LoopResult) -> None:
            summary["final_loss"] = result.train_loss
            if result.val:
                summary["validation"] = result.val
            save_output(model, tok, tmp, cfg, save_dtype, summary, targets)

        fit(cfg, rt, model, batches, objective, loop, description=cfg.objective, header=header, quiet=quiet,
            write_output=write, evaluate=evaluate if val_batches else None, bar_metrics=bar)
    summary["out"] = str(cfg.out)
    return summary
