"""`aigc kb …`: knowledge bases from the command line (the server's database).

    aigc kb create NAME [--description TEXT]
    aigc kb list [NAME]                 (a name: its documents, with status and chunk count)
    aigc kb add NAME FILE...            (txt, md, html, pdf, docx; each file fails alone)
    aigc kb reindex NAME [FILENAME...]   (parse, chunk and embed again: all, or the named documents)
    aigc kb search NAME "QUERY" [--k 5] [--json]
    aigc kb remove NAME

`--user NAME` acts for that account (default: the single room of a server without accounts).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub) -> None:
    kb = sub.add_parser("kb", help="knowledge bases: documents the chat and customer service answer from")
    k = kb.add_subparsers(dest="kb_command", metavar="COMMAND")
    k.required = True

    from aigc.cli.common import add_database_arg

    def common(p: argparse.ArgumentParser) -> None:
        add_database_arg(p)
        p.add_argument("--user", default=None, help="act for this account (default: no account)")

    p = k.add_parser("create", help="create a knowledge base")
    p.add_argument("name")
    p.add_argument("--description", default="")
    common(p)
    p.set_defaults(func=_create)
    p = k.add_parser("list", help="list knowledge bases with their document and chunk counts")
    p.add_argument("name", nargs="?", help="list this knowledge base's documents instead")
    common(p)
    p.set_defaults(func=_list)
    p = k.add_parser("add", help="add documents (txt, md, html, pdf, docx)")
    p.add_argument("name")
    p.add_argument("files", nargs="+", type=Path)
    common(p)
    p.set_defaults(func=_add)
    p = k.add_parser("reindex", help="parse, chunk and embed documents again (all, or those named)")
    p.add_argument("name")
    p.add_argument("filenames", nargs="*", help="document file names as `aigc kb list NAME` shows them")
    common(p)
    p.set_defaults(func=_reindex)
    p = k.add_parser("search", help="the best passages for a question")
    p.add_argument("name")
    p.add_argument("query")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print the hits as JSON")
    common(p)
    p.set_defaults(func=_search)
    p = k.add_parser("remove", help="delete a knowledge base and its documents")
    p.add_argument("name")
    common(p)
    p.set_defaults(func=_remove)


def _store(args: argparse.Namespace):
    from aigc.cli.common import open_database
    from aigc.knowledge.store import KnowledgeStore

    db = open_database(args)
    owner = None
    if args.user:
        from aigc.accounts import UserStore

        owner = UserStore(db).by_name(args.user).id
    return KnowledgeStore(db, owner)


def _kb(store, name: str) -> dict:
    from aigc.apps.chat.conversations import NotFoundError

    try:
        return store.by_name(name)
    except NotFoundError:
        raise ValueError(f"no knowledge base named {name!r} (aigc kb list shows them)") from None


def _reindex(args: argparse.Namespace) -> int:
    store = _store(args)
    kb = _kb(store, args.name)
    docs = store.documents(kb["id"])
    if args.filenames:
        known = {d["filename"]: d for d in docs}
        missing = [f for f in args.filenames if f not in known]
        if missing:
            raise ValueError(f"no document named {missing[0]!r} in {kb['name']}")
        docs = [known[f] for f in args.filenames]
    failed = 0
    for i, doc in enumerate(docs, 1):
        result = store.index_document(kb["id"], doc["id"])
        if result["status"] == "indexed":
            print(f"[{i}/{len(docs)}] {result['filename']}: {result['chunks']} chunks")
        else:
            failed += 1
            print(f"[{i}/{len(docs)}] {result['filename']}: failed: {result['error']}", file=sys.stderr)
    return 2 if failed else 0


def _create(args: argparse.Namespace) -> int:
    kb = _store(args).create(args.name, args.description)
    print(f"created knowledge base {kb['name']} (id {kb['id']})")
    return 0


def _list(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.name:
        kb = _kb(store, args.name)
        for d in store.documents(kb["id"]):
            print(f"{d['id']}\t{d['filename']}\t{d['status']}\t{d['chunks']} chunks" +
                  (f"\t{d['error']}" if d["error"] else ""))
        return 0
    bases = store.list()
    if not bases:
        print("no knowledge bases (aigc kb create NAME)")
    for kb in bases:
        print(f"{kb['id']}\t{kb['name']}\t{kb['documents']} documents\t{kb['chunks']} chunks")
    return 0


def _add(args: argparse.Namespace) -> int:
    from aigc.knowledge.store import KnowledgeError

    store = _store(args)
    kb = _kb(store, args.name)
    failed = 0
    for path in args.files:
        def progress(done: int, total: int, name: str = path.name) -> None:
            if sys.stderr.isatty() and total:
                print(f"\r{name}: embedding {done}/{total} chunks", end="", file=sys.stderr, flush=True)

        try:
            doc = store.add_document(kb["id"], path.name, path.read_bytes(), progress)
            if sys.stderr.isatty():
                print("\r\033[K", end="", file=sys.stderr)
        except (OSError, KnowledgeError) as e:
            print(f"{path}: {e.strerror if isinstance(e, OSError) else e}", file=sys.stderr)
            failed += 1
            continue
        if doc["status"] == "indexed":
            print(f"{path.name}: indexed, {doc['chunks']} chunks")
        else:
            print(doc["error"], file=sys.stderr)
            failed += 1
    return 2 if failed else 0


def _search(args: argparse.Namespace) -> int:
    store = _store(args)
    hits = store.search([_kb(store, args.name)["id"]], args.query, args.k)
    if args.json:
        print(json.dumps({"hits": [h.to_dict() for h in hits]}, ensure_ascii=False, indent=1))
        return 0
    if not hits:
        print("no relevant source")
    for i, h in enumerate(hits, 1):
        where = f"{h.filename}" + (f" › {h.heading}" if h.heading else "")
        print(f"[{i}] {where}  (score {h.score:.4f})\n    {' '.join(h.text.split())[:300]}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    store = _store(args)
    store.delete(_kb(store, args.name)["id"])
    print(f"removed knowledge base {args.name}")
    return 0
