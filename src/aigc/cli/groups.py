"""Command groups (`aigc train …`, `aigc eval …`, `aigc data …`): each leaf lives in its own module.

To add a leaf: write `aigc/cli/<module>.py` with `register(subparsers)` and list it below.
"""

from __future__ import annotations

import importlib

GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "data": ("prepare training data", ("data_prepare_cmd", "data_export_feedback_cmd")),
    "train": ("train a tokenizer or a model", ("train_tokenizer_cmd", "train_pretrain_cmd", "train_sft_cmd",
                                                "train_preference_cmd", "train_classify_cmd",
                                                "train_moderation_cmd", "train_recipe_cmd")),
    "eval": ("evaluate a model or a knowledge base", ("eval_perplexity_cmd", "eval_classify_cmd",
                                                      "eval_generate_cmd", "eval_poems_cmd", "eval_retrieval_cmd",
                                                      "eval_run_cmd")),
}


def register(sub) -> None:
    for name, (help_text, leaves) in GROUPS.items():
        p = sub.add_parser(name, help=help_text)
        leaf_sub = p.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
        leaf_sub.required = True
        for module in leaves:
            importlib.import_module(f"aigc.cli.{module}").register(leaf_sub)
