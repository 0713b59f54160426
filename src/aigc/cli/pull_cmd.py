"""`aigc pull`: download a model from the Hugging Face hub into the HF cache, where `hf:NAME` finds it.

huggingface_hub does the work: it resumes a partial download and shows progress bars. Offline (the
HF_HUB_OFFLINE setting, or no network access to the hub) it fails at once with one line.
"""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("pull", help="download a model from the Hugging Face hub (resumable)",
                       description="Download a hub model into the Hugging Face cache: a transformers repo's "
                                   "config, safetensors weights and tokenizer, or one GGUF file of a GGUF repo.")
    p.add_argument("hub_id", metavar="HUB_ID",
                   help="ORG/REPO, or a full hub name: hf:ORG/REPO[/FILE.gguf | :QUANT][@REVISION]")
    p.add_argument("--file", default=None, metavar="NAME",
                   help="the GGUF file to take from a GGUF repo (NAME.gguf), or its quant (Q4_K_M)")
    p.add_argument("--revision", default=None, help="branch, tag or commit (default: main)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aigc.cli.main import UsageError
    from aigc.models.registry import HubRef, download_from_hub, parse_hub_ref

    ref = parse_hub_ref(args.hub_id)
    if (args.file and ref.file) or (args.revision and ref.revision):
        raise UsageError(f"{args.hub_id!r} already names a file or revision; drop --file/--revision or that part")
    ref = HubRef(ref.repo_id, args.file or ref.file, args.revision or ref.revision)
    model = download_from_hub(ref)
    print(f"pulled {model.name} ({model.kind}) to {model.path}")
    print(f"use it: aigc chat -m {model.name}")
    return 0
