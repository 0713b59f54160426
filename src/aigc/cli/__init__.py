"""The `aigc` command line: one entry point, a subcommand per job."""

from aigc.cli.main import main

__all__ = ["main"]
