"""Pretraining settings (`PretrainConfig`): defaults < recipe YAML (`recipes/NAME.yaml`) < flags.

A recipe is a flat YAML mapping whose keys are the field names below or the loop's shared ones
(`config.TrainConfig`; dashes or underscores), e.g.

    n_layer: 6
    n_embd: 384
    lr: 6.0e-4

Unknown keys are an error (a typo must not silently fall back to a default).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aigc.models.config import ModelConfig
from aigc.training import config as settings
from aigc.training.config import TrainConfig, flag, knob

# Fields that fix the network's shape: a resumed run must use the checkpoint's values.
MODEL_FIELDS = ("family", "n_layer", "n_head", "n_kv_head", "n_embd", "ffn_size", "block_size", "vocab_multiple",
                "rope_theta")


@dataclass(kw_only=True)
class PretrainConfig(TrainConfig):
    data: str = knob("", "directory written by `aigc data prepare`")
    out: str = knob("", "run directory (checkpoints, metrics, and the final model with its DONE marker)")
    # model (llama family: RMSNorm, rotary positions, SwiGLU, tied input/output embeddings)
    family: str = knob("llama", "llama, qwen2 or mistral", choices=("llama", "qwen2", "mistral"))
    n_layer: int = knob(4, "transformer blocks")
    n_head: int = knob(4, "attention heads")
    n_kv_head: int | None = knob(None, "key/value heads (grouped-query attention; default: n-head)")
    n_embd: int = knob(256, "hidden size")
    ffn_size: int | None = knob(None, "SwiGLU width (default: 8/3 x n-embd, rounded up to 64)")
    block_size: int = knob(256, "context length in tokens")
    rope_theta: float = knob(10000.0, "rotary base")
    vocab_multiple: int = knob(64, "embedding rows padded to a multiple: faster matmuls, ids unchanged")
    # pretraining's own defaults for the loop's knobs
    seed: int = knob(1337, "seed of initialisation, data order and dropout")
    batch_size: int = knob(16, "sequences per micro-batch and process")
    max_steps: int = knob(1000, "optimizer steps (raise it and --resume to train a finished run further)")
    lr: float = knob(1e-3, "peak learning rate")
    warmup_steps: int = knob(100, "linear warmup steps")
    weight_decay: float = knob(0.1, "AdamW decoupled weight decay (matrices only)")
    beta2: float = knob(0.95, "AdamW beta2")
    eval_every: int = knob(200, "validation loss and a sample every N steps (0 = at the end); a fresh run also "
                                "evaluates before its first step")
    checkpoint_every: int = knob(500, "checkpoint every N steps (0 = at the end)")
    # pretraining only
    compile: bool = knob(False, "torch.compile the model (slow start, faster steps)")
    eval_batches: int = knob(20, "validation batches per evaluation")
    keep_checkpoints: int = knob(2, "checkpoints kept (0 = all)")
    sample_tokens: int = knob(48, "greedy tokens generated at each evaluation (0 = none)")
    sample_prompt: str | None = knob(None, "prompt of those samples (default: the start of the validation text)")
    peak_tflops: float | None = knob(None, "peak TFLOP/s for MFU (default: measured at start)")
    stop_at: int | None = knob(None, "end this session after this step without finishing (continue with --resume)")

    def validate(self) -> PretrainConfig:
        super().validate()
        for name in ("n_layer", "n_head", "n_embd", "block_size", "eval_batches", "vocab_multiple"):
            if getattr(self, name) < 1:
                raise ValueError(f"{flag(name)} must be >= 1, got {getattr(self, name)}")
        for name in ("keep_checkpoints", "sample_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{flag(name)} must be >= 0, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"--n-embd ({self.n_embd}) must be a multiple of --n-head ({self.n_head})")
        if (self.n_embd // self.n_head) % 2:
            raise ValueError(f"head size n_embd / n_head = {self.n_embd // self.n_head} must be even (rotary)")
        kv = self.n_kv_head or self.n_head
        if kv < 1 or self.n_head % kv:
            raise ValueError(f"--n-head ({self.n_head}) must be a multiple of --n-kv-head ({kv})")
        if self.family not in ("llama", "qwen2", "mistral"):
            raise ValueError(f"--family must be llama, qwen2 or mistral, got {self.family!r}")
        if self.stop_at is not None and self.stop_at < 1:
            raise ValueError(f"--stop-at must be >= 1, got {self.stop_at}")
        return self


def build_config(recipe: str | Path | None = None, **overrides: Any) -> PretrainConfig:
    """Defaults, then the recipe, then every override that is not None."""
    return settings.build(PretrainConfig, recipe, **overrides)


def model_config(cfg: PretrainConfig, vocab_size: int, *, eos_token_id: int | None,
                 pad_token_id: int | None) -> ModelConfig:
    """The network a pretraining config describes, for a tokenizer of `vocab_size` ids."""
    padded_vocab = -(-vocab_size // cfg.vocab_multiple) * cfg.vocab_multiple
    ffn = cfg.ffn_size or -(-(8 * cfg.n_embd // 3) // 64) * 64
    return ModelConfig(
        family=cfg.family, vocab_size=padded_vocab, hidden_size=cfg.n_embd, intermediate_size=ffn,
        num_layers=cfg.n_layer, num_heads=cfg.n_head, num_kv_heads=cfg.n_kv_head or cfg.n_head,
        max_position_embeddings=cfg.block_size, rope_theta=cfg.rope_theta, tie_word_embeddings=True,
        dropout=cfg.dropout, eos_token_id=eos_token_id, pad_token_id=pad_token_id, norm_eps=1e-5,
    )
