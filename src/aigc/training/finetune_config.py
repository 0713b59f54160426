"""The settings of the fine-tuning trainers (SFT, classification, DPO/KTO): the loop's shared knobs
(`config.TrainConfig`) and each trainer's own. Kept free of torch so the command line can build its
flags from them without loading it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aigc.training.config import TrainConfig, knob

OBJECTIVES = ("dpo", "kto")
SAVE_DTYPES = ("float32", "bfloat16", "float16")


@dataclass(kw_only=True)
class FinetuneConfig(TrainConfig):
    """Fine-tuning a model that exists (SFT, classification, DPO, KTO): the loop's knobs and these."""

    base: str = knob(help="the model to start from: a folder, a name under models/, hf:ORG/REPO, ollama:NAME")
    data: Path = knob(help="training records (.jsonl or .jsonl.gz)")
    out: Path = knob(help="output directory (appears only when training is done)")
    lora_r: int = knob(0, "LoRA rank; 0 = full fine-tuning (--lora: 16)")
    lora_alpha: float = knob(16.0, "LoRA alpha")
    lora_dropout: float = knob(0.05, "dropout on the LoRA branch")
    lora_targets: list[str] | None = knob(None, "comma-separated HF module names (q_proj,k_proj,v_proj,o_proj,"
                                                "gate_proj,up_proj,down_proj) or all-linear (default)")
    freeze_embeddings: bool = knob(False, "do not train the token embeddings")
    freeze_layers: int = knob(0, "freeze the first N blocks")
    epochs: float = knob(1.0, "passes over the training data (unless --max-steps)")
    max_length: int = knob(1024, "tokens per example (longer ones are cut)")
    val_fraction: float = knob(0.05, "share of the data held out for validation")
    save_dtype: str = knob("float32", "dtype of the saved weights", choices=SAVE_DTYPES)
    force: bool = knob(False, "replace an existing output directory")
    models_dir: Path | None = knob(None, "folder of local models")
    extra: dict[str, Any] = knob({}, cli=False)  # recorded in training_args.json

    def validate(self) -> FinetuneConfig:
        super().validate()
        if self.lora_targets in (["all-linear"], []):
            self.lora_targets = None
        if self.lora_r < 0 or self.freeze_layers < 0:
            raise ValueError("--lora-r and --freeze-layers must be >= 0")
        if self.max_length < 2:
            raise ValueError(f"--max-length must be >= 2, got {self.max_length}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError("--val-fraction must be in [0, 1)")
        if not self.epochs > 0:
            raise ValueError(f"--epochs must be > 0, got {self.epochs}")
        if self.save_dtype not in SAVE_DTYPES:
            raise ValueError(f"--save-dtype must be one of {', '.join(SAVE_DTYPES)}, got {self.save_dtype!r}")
        self.base, self.data, self.out = str(self.base), Path(self.data), Path(self.out)
        return self

    def args_record(self) -> dict[str, Any]:
        """What training_args.json records: every setting, and the caller's extras."""
        return {**{k: v for k, v in self.to_dict().items() if k != "extra"}, **self.extra}



@dataclass(kw_only=True)
class SFTConfig(FinetuneConfig):
    messages_field: str = knob("messages", "record field holding the messages")


@dataclass(kw_only=True)
class ClassifyConfig(FinetuneConfig):
    text_field: str = knob("text", "record field holding the text")
    label_field: str = knob("label", "record field holding the label (a list of labels: multi-label)")
    head_only: bool = knob(False, "train only the classification head on frozen features (fast on a CPU: one "
                                  "forward pass per text, then any number of epochs)")
    max_train: int | None = knob(None, "subsample the training split to N examples")
    max_val: int | None = knob(None, "subsample the validation split to N examples")
    # Classification's own defaults for shared knobs.
    epochs: float = knob(2.0, "passes over the training data (unless --max-steps)")
    batch_size: int = knob(16, "texts per micro-batch and process")
    lr: float | None = knob(None, "peak learning rate (default: 5e-4 with LoRA, 1e-3 head only, 3e-5 full)")
    min_lr: float | None = knob(0.0, "final learning rate of the cosine decay")
    warmup_fraction: float = knob(0.1, "share of the steps spent warming up when --warmup-steps is not given")
    max_length: int = knob(128, "tokens per text (longer ones are cut)")
    val_fraction: float = knob(0.1, "share of the data held out for validation (stratified by label)")

    def validate(self) -> ClassifyConfig:
        super().validate()
        if self.head_only and self.lora_r:
            raise ValueError("--head-only trains only the classification head; it cannot be combined with --lora-r")
        return self


@dataclass(kw_only=True)
class PreferenceConfig(FinetuneConfig):
    objective: str = knob("dpo", "dpo | kto", choices=OBJECTIVES, cli=False)  # the command says which
    batch_size: int = knob(4, "examples per micro-batch and process (DPO: pairs)")
    lr: float | None = knob(None, "peak learning rate (default: 1e-5 with LoRA, 1e-6 full)")
    beta: float = knob(0.1, "how far the model may move from the reference")
    desirable_weight: float = knob(1.0, "KTO: weight of 👍 replies (lambda_D)")
    undesirable_weight: float = knob(1.0, "KTO: weight of 👎 replies (lambda_U)")

    def validate(self) -> PreferenceConfig:
        super().validate()
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose {', '.join(OBJECTIVES)}")
        if not self.beta > 0:
            raise ValueError(f"--beta must be positive, got {self.beta}")
        if self.desirable_weight <= 0 or self.undesirable_weight <= 0:
            raise ValueError("--desirable-weight and --undesirable-weight must be positive")
        if self.objective == "kto" and self.batch_size < 2:
            raise ValueError("KTO estimates its KL reference point from the other replies of a batch: "
                             "--batch-size must be at least 2")
        return self


