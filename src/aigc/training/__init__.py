"""Training: data preparation, tokenizer training, pretraining and fine-tuning loops.

Shared pieces every loop reuses: `optim` (AdamW parameter groups, LR schedule), `checkpointing`
(atomic checkpoints that resume exactly), `progress` (progress bar, metrics.jsonl, TensorBoard, loss
curve) and `distributed` (torchrun / DDP set-up). Modules are imported on demand (torch is heavy).
"""
