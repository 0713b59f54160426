"""Fine-tune a decoder as a text classifier (last-token pooling + linear head), full or with LoRA.

Records are `{text_field: str, label_field: label}` in JSON Lines; labels may be strings, numbers or
booleans (they become strings). The data is split into train/validation per label (stratified, by
seed), so both sides keep the label proportions. The report gives accuracy, macro-F1, a confusion
matrix and the majority-class baseline (the most frequent training label). The output directory is
a HF `*ForSequenceClassification` model (LoRA is merged in; the PEFT adapter is kept in `adapter/`).
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from aigc.eval.classification import (
    ClassificationReport,
    MultiLabelReport,
    classification_report,
    multilabel_report,
)
from aigc.models.classifier import SequenceClassifier, encode_texts, pooled_features, predict_probs, right_pad
from aigc.training.distributed import DistEnv
from aigc.training.finetune import (
    count_parameters,
    fit,
    freeze,
    progress_console,
    read_jsonl,
    resolve_loop,
    set_dropout,
    write_json,
)
from aigc.training.finetune_config import ClassifyConfig
from aigc.training.loop import LoopResult, StreamSource, check_memory, runtime
from aigc.training.sft import check_config, length_batches


def load_labeled(path: str | Path, text_field: str = "text", label_field: str = "label"
                 ) -> tuple[list[str], list[Any]]:
    """(texts, labels as strings). Records with an empty text are skipped; a missing field is an error.
    A label that is a list (of strings) makes the data multi-label: every record must have a list
    (an empty one: no label applies), and each label becomes a tuple."""
    texts, labels = [], []
    for n, record in read_jsonl(path):
        for name in (text_field, label_field):
            if name not in record:
                raise ValueError(f"{path}:{n}: no {name!r} field (the record has: {', '.join(record) or 'nothing'});"
                                 " choose fields with --text-field / --label-field")
        text, label = record[text_field], record[label_field]
        if not isinstance(text, str):
            raise ValueError(f"{path}:{n}: {text_field!r} must be a string, got {type(text).__name__}")
        multi = isinstance(label, list)
        if labels and multi != isinstance(labels[0], tuple):
            raise ValueError(f"{path}:{n}: {label_field!r} is {'a list' if multi else 'not a list'} here but "
                             f"{'not ' if multi else ''}in earlier records (multi-label data has a list in every record)")
        if multi and not all(isinstance(x, str) and x for x in label):
            raise ValueError(f"{path}:{n}: a multi-label {label_field!r} must be a list of non-empty strings")
        if label is None or isinstance(label, dict):
            raise ValueError(f"{path}:{n}: {label_field!r} must be a string, number or boolean")
        if text.strip():
            texts.append(text)
            labels.append(tuple(sorted(set(label))) if multi else str(label))
    if not texts:
        raise ValueError(f"{path}: no records with a non-empty {text_field!r}")
    return texts, labels


def stratified_split(labels: list[str], val_fraction: float, seed: int, max_train: int | None = None,
                     max_val: int | None = None) -> tuple[list[int], list[int]]:
    """Indices (train, val), split per label so both keep the label proportions; optional caps subsample
    each side proportionally too."""
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, lab in enumerate(labels):
        by_label[lab].append(i)
    train, val = [], []
    for lab in sorted(by_label):
        idx = by_label[lab]
        rng.shuffle(idx)
        k = round(len(idx) * val_fraction)
        if val_fraction > 0 and len(idx) > 1:
            k = max(1, k)
        val += idx[:k]
        train += idx[k:]

    def cap(idx: list[int], n: int | None) -> list[int]:
        if n is None or n >= len(idx):
            return idx
        # Take the same share of each label.
        groups: dict[str, list[int]] = defaultdict(list)
        for i in idx:
            groups[labels[i]].append(i)
        out = []
        for lab in sorted(groups):
            out += groups[lab][: max(1, round(n * len(groups[lab]) / len(idx)))]
        return out[:n] if len(out) > n else out

    train, val = cap(train, max_train), cap(val, max_val)
    rng.shuffle(train)
    return train, val


@dataclass
class Batch:
    input_ids: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor
    num_items: int


def _targets(ys: list[Any], num_labels: int) -> torch.Tensor:
    """Class ids (single-label), or multi-hot rows for tuples of label ids (multi-label)."""
    if ys and isinstance(ys[0], tuple):
        out = torch.zeros(len(ys), num_labels)
        for row, y in enumerate(ys):
            out[row, list(y)] = 1.0
        return out
    return torch.tensor(ys, dtype=torch.long)


def _collate(rows: list[tuple[list[int], Any]], pad_id: int, device: torch.device, num_labels: int) -> Batch:
    ids, lengths = right_pad([r for r, _ in rows], pad_id)
    targets = _targets([y for _, y in rows], num_labels)
    return Batch(ids.to(device), lengths.to(device), targets.to(device), len(rows))


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if targets.dtype.is_floating_point:  # multi-label
        return F.binary_cross_entropy_with_logits(logits.float(), targets)
    return F.cross_entropy(logits.float(), targets)


def classification_loss(model: SequenceClassifier, batch: Batch) -> torch.Tensor:
    return _loss(model(batch.input_ids, batch.lengths), batch.targets)


@dataclass
class FeatureBatch:
    features: torch.Tensor  # pooled hidden states [B, D]
    targets: torch.Tensor
    num_items: int


def _feature_batch(features: torch.Tensor, items: list[tuple[int, Any]], num_labels: int) -> FeatureBatch:
    idx = torch.tensor([i for i, _ in items], device=features.device)
    targets = _targets([y for _, y in items], num_labels).to(features.device)
    return FeatureBatch(features[idx], targets, len(items))


def head_loss(model: SequenceClassifier, batch: FeatureBatch) -> torch.Tensor:
    return _loss(model.score(batch.features), batch.targets)


def _report(model: SequenceClassifier, probs: torch.Tensor, targets: list[Any], majority: int
            ) -> ClassificationReport | MultiLabelReport:
    if model.multi_label:
        predicted = [tuple(i for i, p in enumerate(row) if p >= 0.5) for row in probs.tolist()]
        return multilabel_report(targets, predicted, model.labels)
    return classification_report(targets, probs.argmax(-1).tolist(), model.labels, majority_label=majority)


def evaluate(model: SequenceClassifier, rows: list[list[int]], targets: list[Any], majority: int,
             batch_size: int, amp: torch.dtype | None) -> ClassificationReport | MultiLabelReport:
    return _report(model, predict_probs(model, rows, batch_size, amp), targets, majority)


def train_classifier(cfg: ClassifyConfig, quiet: bool = False, env: DistEnv | None = None
                     ) -> tuple[ClassificationReport | MultiLabelReport | None, dict[str, Any]]:
    """Fine-tune, evaluate on the validation split and write `cfg.out`. Returns (report, summary)."""
    from aigc.models.loader import load_model
    from aigc.training.lora import add_lora, freeze_for_lora, merge_lora, save_peft_adapter

    save_dtype = check_config(cfg)
    texts, labels = load_labeled(cfg.data, cfg.text_field, cfg.label_field)
    multi = isinstance(labels[0], tuple)
    names = sorted(set().union(*labels)) if multi else sorted(set(labels))
    if multi and not names:
        raise ValueError(f"{cfg.data}: no record has a label in {cfg.label_field!r}")
    if not multi and len(names) < 2:
        raise ValueError(f"{cfg.data}: only one label ({names[0]!r}) in {cfg.label_field!r}; a classifier needs two")
    strata = [(lab[0] if lab else "") for lab in labels] if multi else labels  # split by the first label
    train_idx, val_idx = stratified_split(strata, cfg.val_fraction, cfg.seed, cfg.max_train, cfg.max_val)
    if not train_idx:
        raise ValueError("no training examples left after the validation split")
    with runtime(cfg, env) as rt:
        device, amp = rt.device, rt.amp
        loaded = load_model(cfg.base, models_dir=cfg.models_dir, dtype="float32")
        tok, backbone = loaded.tokenizer, loaded.model
        max_length = min(cfg.max_length, backbone.config.context_length)
        label_id = {lab: i for i, lab in enumerate(names)}
        rows = encode_texts(tok, [texts[i] for i in train_idx + val_idx], max_length)
        top = max(max(r) for r in rows)
        if top >= backbone.config.vocab_size:
            raise ValueError(f"token id {top} is outside the model's vocabulary of {backbone.config.vocab_size}; "
                             "the tokenizer does not belong to this model (vocab too small)")

        def target(lab: Any) -> Any:
            return tuple(label_id[x] for x in lab) if multi else label_id[lab]

        train = [(r, target(labels[i])) for r, i in zip(rows, train_idx, strict=False)]
        val_rows, val_y = rows[len(train_idx):], [target(labels[i]) for i in val_idx]
        majority = 0 if multi else label_id[Counter(labels[i] for i in train_idx).most_common(1)[0][0]]

        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        set_dropout(backbone, cfg.dropout)
        model = SequenceClassifier(backbone, names, pad, multi_label=multi)
        model.requires_grad_(True)
        if cfg.lora_r:
            targets = add_lora(backbone, backbone.config, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout,
                               cfg.lora_targets)
            freeze_for_lora(model, keep=("score.",))
        freeze(backbone, embeddings=cfg.freeze_embeddings, layers=cfg.freeze_layers)
        if cfg.head_only:
            backbone.requires_grad_(False)
        model.to(device)
        trainable, total = count_parameters(model)
        check_memory(model, device, cfg.batch_size * max(len(r) for r in rows), autocast_bf16=amp is not None,
                     processes=rt.env.local_world_size)

        default_lr = 5e-4 if cfg.lora_r else 1e-3 if cfg.head_only else 3e-5
        loop = resolve_loop(cfg, len(train), default_lr, rt.env, cfg.epochs)
        t0 = time.perf_counter()
        probe = not any(p.requires_grad for p in backbone.parameters())
        if probe:  # only the head trains: the pooled features never change, so compute them once
            progress_console(quiet or not rt.env.is_main).print(
                f"head only: computing features of {len(rows)} texts once")
            feats = pooled_features(model, rows, cfg.batch_size * 2, amp)
            items = [(i, y) for i, (_, y) in enumerate(train)]
            batches = StreamSource(length_batches(items, cfg.batch_size, cfg.seed, length=lambda _: 0),
                                   lambda b: _feature_batch(feats, b, len(names)))
            loss_fn = head_loss
        else:
            batches = StreamSource(length_batches(train, cfg.batch_size, cfg.seed, length=lambda r: len(r[0])),
                                   lambda b: _collate(b, pad, device, len(names)))
            loss_fn = classification_loss
        summary: dict[str, Any] = {
            "base": cfg.base, "labels": names, "train_examples": len(train), "val_examples": len(val_rows),
            "steps": loop.max_steps, "trainable_params": trainable, "total_params": total, "lora": bool(cfg.lora_r),
            "device": str(device), "processes": rt.env.world_size, "autocast": rt.autocast_name, "lr": loop.lr,
            "max_length": max_length, "head_only": probe, "multi_label": multi,
        }

        def val_report() -> ClassificationReport | MultiLabelReport:
            if probe:
                with torch.no_grad():
                    logits = model.score(feats[len(train):]).float()
                probs = torch.sigmoid(logits) if multi else F.softmax(logits, dim=-1)
                return _report(model, probs.cpu(), val_y, majority)
            return evaluate(model, val_rows, val_y, majority, cfg.batch_size * 2, amp)

        last: dict[str, Any] = {}

        def val_metrics() -> dict[str, float]:
            last["report"] = r = val_report()
            return {"accuracy": r.accuracy, "macro_f1": r.macro_f1}

        def write(tmp: Path, result: LoopResult) -> None:
            summary["final_loss"] = result.train_loss
            summary["train_seconds"] = round(time.perf_counter() - t0, 1)
            model.to("cpu")
            if cfg.lora_r:
                save_peft_adapter(backbone, backbone.config, tmp / "adapter", base_model=cfg.base,
                                  task_type="SEQ_CLS", extra_tensors={"score.weight": model.score.weight},
                                  modules_to_save=["score"])
                summary["targets"] = targets
                merge_lora(backbone)
            model.save_pretrained(tmp, tokenizer=tok, dtype=save_dtype)
            if not multi:
                summary["majority_label"] = names[majority]
            if "report" in last:
                summary["validation"] = last["report"].to_dict()
            write_json(tmp / "training_args.json", cfg.args_record())
            write_json(tmp / "eval_results.json", summary)

        fit(cfg, rt, model, batches, loss_fn, loop, description="classify", quiet=quiet, write_output=write,
            header=f"classifier on {cfg.base}: {len(train)} train / {len(val_rows)} validation examples, labels "
                   f"{names}, {loop.max_steps} steps, {trainable / 1e6:.2f}M of {total / 1e6:.2f}M parameters "
                   f"trained on {device} ({rt.autocast_name}, {rt.env.world_size} process(es))",
            evaluate=val_metrics if val_rows else None)
    summary["out"] = str(cfg.out)
    return last.get("report"), summary
