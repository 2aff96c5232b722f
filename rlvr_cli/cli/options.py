"""Typer arguments and options that several commands share."""

from __future__ import annotations

import typer

OVERRIDES = typer.Argument(None, help="Hydra overrides, e.g. optimizer=adamw optimizer.lr=1e-5 adapter=lora")
