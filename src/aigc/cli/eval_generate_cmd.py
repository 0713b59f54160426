"""`aigc eval generate`: translate or summarize source texts and score them against references
(BLEU/chrF for translation, ROUGE for summaries, distinct-n for both)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aigc.cli.common import add_model_args


def register(sub) -> None:
    p = sub.add_parser("generate", help="score generated translations or summaries against references")
    add_model_args(p)
    p.add_argument("--data", required=True, type=Path, help=".jsonl(.gz) with a source and a reference per record")
    p.add_argument("--task", required=True, choices=["translate", "summarize"])
    p.add_argument("--source-field", default=None, help="default: source/src/en (translate), text/document (summarize)")
    p.add_argument("--target-field", default=None, help="default: target/tgt/zh (translate), summary (summarize)")
    p.add_argument("--lang", default=None, help="language of the references, e.g. zh or en (default: detected)")
    p.add_argument("--prompt", default=None, help="instruction template with {source} and {language}")
    p.add_argument("--limit", type=int, default=100, help="records to evaluate (default: %(default)s)")
    p.add_argument("--max-tokens", type=int, default=128, help="(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--output", type=Path, default=None, help="write predictions as JSONL")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=run)


def _fields(record: dict, task: str, source: str | None, target: str | None) -> tuple[str, str]:
    from aigc.eval.generation_metrics import FIELD_GUESSES

    if source and target:
        return source, target
    for s, t in FIELD_GUESSES[task]:
        if (source or s) in record and (target or t) in record:
            return source or s, target or t
    raise ValueError(f"cannot tell the source and reference fields of {sorted(record)}; "
                     "pass --source-field and --target-field")


def run(args: argparse.Namespace) -> int:
    from aigc.cli.common import load
    from aigc.eval.generation_metrics import build_prompt, generation_metrics, is_cjk, predict
    from aigc.training.finetune import read_jsonl

    if args.limit is not None and args.limit < 1:
        raise ValueError("--limit must be at least 1")
    records = []
    for n, record in read_jsonl(args.data):
        records.append((n, record))
        if args.limit is not None and len(records) >= args.limit:
            break
    if not records:
        raise ValueError(f"{args.data}: no records")
    src_f, tgt_f = _fields(records[0][1], args.task, args.source_field, args.target_field)
    sources, refs = [], []
    for n, r in records:
        if not isinstance(r.get(src_f), str) or not isinstance(r.get(tgt_f), str):
            raise ValueError(f"{args.data}:{n}: {src_f!r} and {tgt_f!r} must be strings")
        sources.append(r[src_f])
        refs.append(r[tgt_f])
    lang = args.lang or ("zh" if is_cjk(refs) else "en")
    language = {"zh": "Chinese", "en": "English"}.get(lang, lang)
    lm = load(args)
    prompts = [build_prompt(lm.tokenizer, args.task, s, language=language, template=args.prompt) for s in sources]
    preds = predict(lm.model, lm.tokenizer, prompts, max_tokens=args.max_tokens, batch_size=args.batch_size,
                    eos_token_ids=lm.eos_token_ids)
    scores = generation_metrics(preds, refs, args.task, lang=lang)
    if args.output is not None:
        with open(args.output, "w", encoding="utf-8") as f:
            for s, p, r in zip(sources, preds, refs, strict=True):
                f.write(json.dumps({"source": s, "prediction": p, "reference": r}, ensure_ascii=False) + "\n")
    if args.json:
        print(json.dumps({"n": len(preds), "lang": lang, **scores}, indent=2))
    else:
        print(f"{args.task} on {len(preds)} records of {args.data} (references: {lang})")
        for k, v in scores.items():
            print(f"  {k:<12} {v:.4f}" if k.startswith("distinct") else f"  {k:<12} {v:.2f}")
    return 0
