"""Supervised fine-tuning on chat records `{"messages": [{"role": ..., "content": ...}, ...]}`.

Each conversation is rendered with the base model's own chat template through
`Tokenizer.apply_chat_template` (the code path the server uses), and the loss covers only what the
assistant says. Assistant spans are found with the template itself: for the i-th message (an
assistant turn), rendering messages[:i] with the generation prompt gives the text before the reply,
and rendering messages[:i+1] gives the text through the end of the reply. The reply's span is the
difference, cut after the turn's end token (`<|im_end|>`, `<|eot_id|>`, ...) so the newline a template
writes after it is not trained. Tokens whose first character lies in a span get their id as label;
every other label is -100.

Full fine-tuning writes a Hugging Face model directory; with `lora_r` the output is a PEFT adapter
(merge it with `aigc merge`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from aigc.chat_template import TemplateError
from aigc.tokenizer import Tokenizer
from aigc.training.distributed import DistEnv
from aigc.training.finetune import (
    check_output_dir,
    count_parameters,
    fit,
    freeze,
    read_jsonl,
    resolve_loop,
    set_dropout,
    write_json,
)
from aigc.training.finetune_config import FinetuneConfig, SFTConfig
from aigc.training.loop import LoopResult, StreamSource, check_memory, runtime

IGNORE = -100


@dataclass
class SFTExample:
    input_ids: list[int]
    labels: list[int]  # = input_ids on assistant tokens, IGNORE elsewhere (not shifted)

    @property
    def num_trained(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


def _turn_end_strings(tokenizer: Tokenizer) -> list[str]:
    strings = [tokenizer.id_to_token(i) for i in tokenizer.eos_token_ids]
    return [s for s in strings if s]


def assistant_spans(tokenizer: Tokenizer, messages: list[dict[str, Any]], first_trained: int = 0
                    ) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans [start, end) of each assistant reply
    (its content and the end-of-turn token) from message `first_trained` on (a preference
    completion trains only the reply after its prompt, not the prompt's earlier replies)."""
    full = tokenizer.apply_chat_template(messages, add_generation_prompt=False)
    ends = _turn_end_strings(tokenizer)
    spans = []
    for i, message in enumerate(messages):
        if message.get("role") != "assistant" or i < first_trained:
            continue
        if i == 0:
            raise TemplateError("the conversation starts with an assistant message; "
                                "there is no prompt to answer")
        before = tokenizer.apply_chat_template(messages[:i], add_generation_prompt=True)
        through = tokenizer.apply_chat_template(messages[: i + 1], add_generation_prompt=False)
        if not through.startswith(before) or not full.startswith(through):
            raise TemplateError(
                "the chat template renders earlier turns differently once later turns follow, so the "
                f"assistant reply of message {i} cannot be located (is it a template that rewrites history?)")
        start, end = len(before), len(through)
        reply = full[start:end]
        cut = max((reply.rfind(s) + len(s) for s in ends if s in reply), default=-1)
        end = start + cut if cut > 0 else start + len(reply.rstrip())
        if end > start:
            spans.append((start, end))
    return full, spans


def build_example(tokenizer: Tokenizer, messages: list[dict[str, Any]], max_length: int | None = None,
                  first_trained: int = 0) -> SFTExample:
    """Token ids of the rendered conversation (exactly `apply_chat_template(..., tokenize=True)`) and
    labels (assistant replies from message `first_trained` on)."""
    text, spans = assistant_spans(tokenizer, messages, first_trained)
    enc = tokenizer.backend.encode(text, add_special_tokens=False)
    ids = list(enc.ids)
    labels = [IGNORE] * len(ids)
    k = 0
    for j, (first, _) in enumerate(enc.offsets):
        while k < len(spans) and first >= spans[k][1]:
            k += 1
        if k < len(spans) and spans[k][0] <= first < spans[k][1]:
            labels[j] = ids[j]
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return SFTExample(ids, labels)


def load_conversations(path: str | Path, field_name: str = "messages") -> list[list[dict[str, Any]]]:
    """Chat records from a .jsonl(.gz) file; each must hold a list of messages with an assistant reply."""
    out = []
    for n, record in read_jsonl(path):
        messages = record.get(field_name)
        if messages is None:
            raise ValueError(f"{path}:{n}: no {field_name!r} field (the record has: {', '.join(record) or 'nothing'})")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise ValueError(f"{path}:{n}: {field_name!r} must be a list of {{role, content}} objects")
        if not any(m.get("role") == "assistant" for m in messages):
            raise ValueError(f"{path}:{n}: the conversation has no assistant message to learn from")
        out.append(messages)
    if not out:
        raise ValueError(f"{path}: no records")
    return out


# ---- training ---------------------------------------------------------------------------------

@dataclass
class Batch:
    input_ids: torch.Tensor
    labels: torch.Tensor
    num_items: int
    num_tokens: int


def _collate(examples: list[SFTExample], device: torch.device) -> Batch:
    width = max(len(e.input_ids) for e in examples)
    # Right padding: with a causal mask no real token attends to the padding, so no mask is needed.
    ids = torch.zeros(len(examples), width, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
        labels[i, : len(e.labels)] = torch.tensor(e.labels)
    return Batch(ids.to(device), labels.to(device), len(examples), sum(len(e.input_ids) for e in examples))


def length_batches(examples: list, batch_size: int, seed: int, length=len) -> Iterator[list]:
    """Endless batches: each epoch shuffles, sorts within windows of 50 batches by length (less padding)
    and shuffles the batches."""
    rng = random.Random(seed)
    while True:
        order = list(range(len(examples)))
        rng.shuffle(order)
        window = batch_size * 50
        batches = []
        for w in range(0, len(order), window):
            chunk = sorted(order[w : w + window], key=lambda i: length(examples[i]))
            batches += [chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size)]
        rng.shuffle(batches)
        for b in batches:
            yield [examples[i] for i in b]


def lm_loss(model, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy over labelled positions; the LM head runs only on those (saves the big matmul)."""
    h = model.hidden_states(batch.input_ids)
    target = batch.labels[:, 1:]
    keep = target != IGNORE
    logits = model.lm_head(h[:, :-1][keep])
    return F.cross_entropy(logits.float(), target[keep])


@torch.no_grad()
def evaluate_loss(model, examples: list[SFTExample], batch_size: int, device, amp) -> dict[str, float]:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        batch = _collate(examples[i : i + batch_size], device)
        n = int((batch.labels[:, 1:] != IGNORE).sum())
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            total += float(lm_loss(model, batch)) * n
        count += n
    loss = total / max(count, 1)
    return {"loss": loss, "ppl": math.exp(min(loss, 50))}


def prepare_examples(tokenizer: Tokenizer, conversations: list, max_length: int, vocab_size: int) -> tuple[list, int]:
    """(examples, number dropped because truncation left no assistant token)."""
    examples, dropped = [], 0
    for i, messages in enumerate(conversations):
        try:
            ex = build_example(tokenizer, messages, max_length)
        except TemplateError as e:
            raise ValueError(f"record {i + 1}: {e}") from None
        if ex.num_trained == 0:
            dropped += 1
            continue
        top = max(ex.input_ids)
        if top >= vocab_size:
            raise ValueError(f"record {i + 1}: token id {top} is outside the model's vocabulary of {vocab_size}; "
                             "the tokenizer does not belong to this model (vocab too small)")
        examples.append(ex)
    if not examples:
        raise ValueError(f"no usable examples: all {len(conversations)} lose their assistant replies at "
                         f"--max-length {max_length}")
    return examples, dropped


# ---- what every chat fine-tune (SFT, DPO, KTO) shares around the loop -------------------------

def check_config(cfg: FinetuneConfig) -> torch.dtype:
    """Fail before anything loads: an output in the way. Returns the save dtype."""
    from aigc.models.hf_checkpoint import parse_dtype

    cfg.validate()
    check_output_dir(cfg.out, cfg.force)
    return parse_dtype(cfg.save_dtype)


def load_base(cfg: FinetuneConfig):
    """The base model in fp32 (trainable copy) and its tokenizer (inside `loop.runtime`, which seeded torch)."""
    from aigc.models.loader import load_model

    return load_model(cfg.base, models_dir=cfg.models_dir, dtype="float32")


def make_trainable(model, cfg: FinetuneConfig, device: torch.device) -> list[str] | None:
    """Dropout, LoRA (returns its HF targets) or full training, frozen parts; moves to `device`."""
    from aigc.training.lora import add_lora, freeze_for_lora

    set_dropout(model, cfg.dropout)
    model.requires_grad_(True)
    targets = None
    if cfg.lora_r:
        targets = add_lora(model, model.config, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
        freeze_for_lora(model)
    freeze(model, embeddings=cfg.freeze_embeddings, layers=cfg.freeze_layers)
    model.to(device)
    return targets


def split_validation(examples: list, cfg: FinetuneConfig) -> tuple[list, list]:
    """(train, val): a shuffled `val_fraction` held out once there are at least 20 examples."""
    random.Random(cfg.seed).shuffle(examples)
    n_val = int(len(examples) * cfg.val_fraction) if len(examples) >= 20 else 0
    return examples[n_val:], examples[:n_val]


def save_output(model, tokenizer: Tokenizer, tmp: Path, cfg: FinetuneConfig, save_dtype: torch.dtype,
                summary: dict[str, Any], targets: list[str] | None) -> None:
    """A Hugging Face directory (full) or a PEFT adapter naming `cfg.base` (LoRA), which `aigc serve
    --model OUT` loads as it is; plus training_args.json and train_results.json."""
    from aigc.models.hf_checkpoint import save_hf_dir
    from aigc.training.lora import save_peft_adapter

    model.to("cpu")
    if cfg.lora_r:
        save_peft_adapter(model, model.config, tmp, base_model=cfg.base)
        tokenizer.save_pretrained(tmp)
        summary["targets"] = targets
    else:
        save_hf_dir(model, tmp, tokenizer=tokenizer, dtype=save_dtype)
    write_json(tmp / "training_args.json", cfg.args_record())
    write_json(tmp / "train_results.json", summary)


def train_sft(cfg: SFTConfig, quiet: bool = False, env: DistEnv | None = None) -> dict[str, Any]:
    """Fine-tune and write `cfg.out`; returns a summary (steps, losses, where things went)."""
    save_dtype = check_config(cfg)
    conversations = load_conversations(cfg.data, cfg.messages_field)
    with runtime(cfg, env) as rt:
        loaded = load_base(cfg)
        model, tok = loaded.model, loaded.tokenizer
        max_length = min(cfg.max_length, model.config.context_length)
        examples, dropped = prepare_examples(tok, conversations, max_length, model.config.vocab_size)
        train, val = split_validation(examples, cfg)

        targets = make_trainable(model, cfg, rt.device)
        trainable, total = count_parameters(model)
        longest = max(len(e.input_ids) for e in train)
        check_memory(model, rt.device, cfg.batch_size * longest, logits_width=model.config.vocab_size,
                     autocast_bf16=rt.amp is not None, processes=rt.env.local_world_size)

        loop = resolve_loop(cfg, len(train), 2e-4 if cfg.lora_r else 2e-5, rt.env, cfg.epochs)
        batches = StreamSource(length_batches(train, cfg.batch_size, cfg.seed, length=lambda e: len(e.input_ids)),
                               lambda b: _collate(b, rt.device))
        summary: dict[str, Any] = {
            "base": cfg.base, "examples": len(train), "val_examples": len(val), "dropped": dropped,
            "steps": loop.max_steps, "trainable_params": trainable, "total_params": total, "lora": bool(cfg.lora_r),
            "device": str(rt.device), "processes": rt.env.world_size, "autocast": rt.autocast_name, "lr": loop.lr,
        }

        def write(tmp: Path, result: LoopResult) -> None:
            summary["final_loss"] = result.train_loss
            if result.val:
                summary.update(val_loss=result.val["loss"], val_ppl=result.val["ppl"])
            save_output(model, tok, tmp, cfg, save_dtype, summary, targets)

        fit(cfg, rt, model, batches, lm_loss, loop, description="sft", quiet=quiet, write_output=write,
            header=f"SFT {cfg.base}: {len(train)} conversations ({dropped} dropped), {loop.max_steps} steps, "
                   f"{trainable / 1e6:.2f}M of {total / 1e6:.2f}M parameters trained on {rt.device} "
                   f"({rt.autocast_name}, {rt.env.world_size} process(es))",
            evaluate=(lambda: evaluate_loss(model, val, cfg.batch_size, rt.device, rt.amp)) if val else None)
    summary["out"] = str(cfg.out)
    return summary
