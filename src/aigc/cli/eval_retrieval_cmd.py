"""`aigc eval retrieval --kb NAME --questions FILE.jsonl`: how well a knowledge base finds the
document that answers each question.

Each line: {"question": ..., "document": FILENAME} (optional "history": [earlier questions], so a
follow-up is searched as the chat searches it; optional "kind" to break the figures down). Prints
recall@1/3/5 (the right document among the top k chunks' documents) and MRR over the ranking
(without the relevance bar).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub) -> None:
    from aigc.cli.common import add_database_arg

    p = sub.add_parser("retrieval", help="recall@1/3/5 and MRR of a knowledge base on labelled questions")
    p.add_argument("--kb", required=True, help="knowledge base name")
    p.add_argument("--questions", required=True, type=Path, help="JSONL: {question, document, history?, kind?}")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    add_database_arg(p)
    p.add_argument("--user", default=None, help="act for this account (default: no account)")
    p.set_defaults(func=run)


def _load(path: Path) -> list[dict]:
    from aigc.training.finetune import read_jsonl  # .jsonl or .jsonl.gz, one clear line per bad record

    items = []
    for n, item in read_jsonl(path):
        if not isinstance(item.get("question"), str) or not isinstance(item.get("document"), str):
            raise ValueError(f"{path}:{n}: expected {{\"question\": str, \"document\": filename}}")
        items.append(item)
    if not items:
        raise ValueError(f"{path}: no questions")
    return items


def evaluate(store, kb_id: int, items: list[dict]) -> dict:
    from aigc.apps.chat.replies import retrieval_query

    ranks: list[tuple[str, int | None]] = []
    for item in items:
        turns = [{"role": "user", "content": q} for q in item.get("history") or []]
        query = retrieval_query(turns + [{"role": "user", "content": item["question"]}])
        documents: list[str] = []
        for hit in store.search([kb_id], query, 20, rank_only=True):
            if hit.filename not in documents:
                documents.append(hit.filename)
        rank = documents.index(item["document"]) + 1 if item["document"] in documents else None
        ranks.append((item.get("kind", "all"), rank))

    def figures(rs: list[int | None]) -> dict:
        n = len(rs)
        return {"questions": n, **{f"recall@{k}": round(sum(r is not None and r <= k for r in rs) / n, 4)
                                   for k in (1, 3, 5)},
                "mrr": round(sum(1 / r for r in rs if r) / n, 4)}

    out = {"all": figures([r for _, r in ranks])}
    for kind in sorted({k for k, _ in ranks}):
        out[kind] = figures([r for k, r in ranks if k == kind])
    return out


def run(args: argparse.Namespace) -> int:
    from aigc.cli.kb_cmd import _kb, _store

    store = _store(args)
    kb = _kb(store, args.kb)
    result = evaluate(store, kb["id"], _load(args.questions))
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=1))
        return 0
    for kind, f in result.items():
        print(f"{kind:10} n={f['questions']:3d}  recall@1 {f['recall@1']:.3f}  recall@3 {f['recall@3']:.3f}  "
              f"recall@5 {f['recall@5']:.3f}  MRR {f['mrr']:.3f}")
    return 0
