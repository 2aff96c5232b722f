"""Typer arguments and options that several commands share."""

from __future__ import annotations

from typing import Any

import typer

OVERRIDES = typer.Argument(None, help="Hydra overrides, e.g. optimizer=adamw optimizer.lr=1e-5 adapter=lora")
#: `--json`: the command's figures as one JSON document on stdout (`rlvr_cli.cli.output.print_json`); tables,
#: notes and progress bars are off, anything else goes to stderr. Works before or after positional arguments.
JSON = typer.Option(False, "--json", help="print the figures as one JSON document on stdout, and nothing else "
                                          "there (bad input: the one-line error on stderr, exit code 2)")


def output_dir(default: str) -> Any:
    """`--output-dir DIR`: where a command writes its files (created); `default` says where they go without it."""
    return typer.Option(None, "--output-dir", help=f"default: {default}")
