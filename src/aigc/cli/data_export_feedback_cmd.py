"""`aigc data export-feedback`: the web app's 👍/👎 ratings as TRL-style training data (JSONL).

    aigc data export-feedback --format kto|dpo|sft [--database-url URL] [--owner USER] [--model M] OUT.jsonl

kto: every rated reply with its prompt and label; dpo: a 👍 reply over a 👎 sibling (regenerations
of one answer); sft: the 👍 replies as chat records. Train on them with `aigc train kto|dpo|sft`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    from aigc.apps.feedback_export import FORMATS
    from aigc.cli.common import add_database_arg

    p = sub.add_parser("export-feedback", help="export rated replies as KTO/DPO/SFT training data (JSONL)",
                       description="Write the web app's rated replies as TRL-compatible JSON Lines in the "
                                   "conversational format: kto (prompt, completion, label), dpo (prompt, "
                                   "chosen, rejected: a liked reply over a disliked sibling) or sft (messages).")
    p.add_argument("out", type=Path, metavar="OUT.jsonl", help="the file to write")
    p.add_argument("--format", dest="fmt", required=True, choices=FORMATS)
    add_database_arg(p)
    p.add_argument("--owner", default=None, metavar="USER",
                   help="only this account's conversations (default: everyone's)")
    p.add_argument("--model", default=None, help="only replies this model wrote (its name as served)")
    p.add_argument("--force", action="store_true", help="replace an existing OUT.jsonl")
    p.set_defaults(func=run)


def existing_database(url: str | None):
    """The server's database, refusing a SQLite file that is not there (opening it would create an
    empty database, and the export would silently be empty)."""
    from sqlalchemy.engine import make_url

    from aigc.cli.common import open_database
    from aigc.settings import Settings

    parsed = make_url(url or Settings().database_url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no database at {path}; pass the server's --database-url")
    return open_database(argparse.Namespace(database_url=url))


def run(args: argparse.Namespace) -> int:
    from aigc.apps.feedback_export import export_feedback, owner_id, write_jsonl

    if args.out.is_dir():
        raise IsADirectoryError(f"{args.out} is a directory; give a .jsonl file")
    if args.out.exists() and not args.force:
        raise ValueError(f"{args.out} exists; pass --force to replace it")
    db = existing_database(args.database_url)
    records, summary = export_feedback(db, args.fmt, owner=owner_id(db, args.owner), model=args.model)
    if not records:
        raise LookupError(f"no {args.fmt} records to export: {summary.describe()}")
    write_jsonl(records, args.out)
    print(f"wrote {args.out}: {summary.describe()}")
    return 0
