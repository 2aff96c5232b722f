"""The `rlvr` command line: one module per command, wiring only."""

from rlvr_cli.cli.main import app

__all__ = ["app"]
