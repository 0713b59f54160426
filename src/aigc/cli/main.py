"""`aigc` entry point: builds the argument parser from each subcommand module and maps errors to
one clear line on stderr with exit code 2 (never a traceback for something a user can get wrong)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from aigc import __version__

# Idle OpenMP workers spin by default, stealing the cores from the engine and server threads; this
# must be decided before torch is imported. The edge of the program is the place to set it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Subcommand modules; each exposes `register(subparsers)` and sets `func` on its parser.
_COMMANDS = ("aigc.cli.models_cmd", "aigc.cli.generate_cmd", "aigc.cli.chat_cmd", "aigc.cli.convert_cmd",
             "aigc.cli.serve_cmd", "aigc.cli.groups", "aigc.cli.classify_cmd", "aigc.cli.merge_cmd",
             "aigc.cli.users_cmd", "aigc.cli.kb_cmd", "aigc.cli.pull_cmd")


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="aigc", description="From raw text to your own ChatGPT-style assistant.")
    parser.add_argument("--version", action="version", version=f"aigc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "bad input", not "bug". Imported lazily to keep `aigc --help` fast."""
    errors: list[type[BaseException]] = [UsageError, ValueError, LookupError, FileNotFoundError,
                                         NotADirectoryError, IsADirectoryError, PermissionError]
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int | None] = args.func
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except _user_errors() as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"aigc {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
